//! Choosing a pool member: members in the edge's own region first, round-robin among them; the
//! rest only when the region has none.

use std::sync::Arc;

use crate::snapshot::UpstreamResource;

/// `healthy` filters out members left out after failures; when none is healthy, all are used.
/// Health is read once per member, so a member tripping while the choice is made (a 429 storm)
/// cannot leave the choice with nothing to pick. `None` only for an empty pool.
pub fn choose<'a>(
    members: &'a [Arc<UpstreamResource>],
    region: &str,
    turn: usize,
    healthy: impl Fn(&UpstreamResource) -> bool,
) -> Option<&'a Arc<UpstreamResource>> {
    let health: Vec<bool> = members.iter().map(|m| healthy(m)).collect();
    let any_healthy = health.contains(&true);
    let usable: Vec<&Arc<UpstreamResource>> = members
        .iter()
        .zip(&health)
        .filter(|(_, healthy)| !any_healthy || **healthy)
        .map(|(m, _)| m)
        .collect();
    let local: Vec<&Arc<UpstreamResource>> = usable
        .iter()
        .copied()
        .filter(|m| !region.is_empty() && m.region.eq_ignore_ascii_case(region))
        .collect();
    let from = if local.is_empty() { &usable } else { &local };
    from.get(turn % from.len().max(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, region: &str) -> Arc<UpstreamResource> {
        Arc::new(UpstreamResource {
            id: id.into(),
            friendly_name: id.into(),
            deployment_name: "gpt".into(),
            model_type: "foundry-model".into(),
            endpoint_url: String::new(),
            origin: String::new(),
            region: region.into(),
            use_managed_identity: false,
            identity_client_id: String::new(),
            token_scope: String::new(),
            active: true,
            use_max_completion_tokens: false,
            api_key: Some("k".into()),
        })
    }

    #[test]
    fn prefers_the_local_region_and_spreads_otherwise() {
        let members = vec![
            member("a", "swedencentral"),
            member("b", "eastus"),
            member("c", "eastus"),
        ];
        let all = |_: &UpstreamResource| true;
        let picks: Vec<&str> = (0..4)
            .map(|t| choose(&members, "eastus", t, all).unwrap().id.as_str())
            .collect();
        assert_eq!(picks, ["b", "c", "b", "c"]);
        let picks: Vec<&str> = (0..3)
            .map(|t| choose(&members, "westeurope", t, all).unwrap().id.as_str())
            .collect();
        assert_eq!(picks, ["a", "b", "c"]);
        // Unhealthy members are skipped, local ones first; with none healthy, all are used again.
        let not_b = |m: &UpstreamResource| m.id != "b";
        let picks: Vec<&str> = (0..2)
            .map(|t| choose(&members, "eastus", t, not_b).unwrap().id.as_str())
            .collect();
        assert_eq!(picks, ["c", "c"]);
        let none = |_: &UpstreamResource| false;
        assert_eq!(choose(&members, "eastus", 0, none).unwrap().id, "b");
        assert!(choose(&[], "eastus", 0, all).is_none());
        // Health that flips between reads cannot make the choice fail.
        let flips = std::sync::atomic::AtomicUsize::new(0);
        let flipping = |_: &UpstreamResource| {
            flips
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(2)
        };
        for t in 0..10 {
            assert!(choose(&members, "eastus", t, flipping).is_some());
        }
    }
}
