//! Choosing a pool member: members in the edge's own region first, round-robin among them; the
//! rest only when the region has none.

use std::sync::Arc;

use crate::snapshot::UpstreamResource;

/// `healthy` filters out members left out after failures; when none is healthy, all are used.
pub fn choose<'a>(
    members: &'a [Arc<UpstreamResource>],
    region: &str,
    turn: usize,
    healthy: impl Fn(&UpstreamResource) -> bool,
) -> &'a Arc<UpstreamResource> {
    let any_healthy = members.iter().any(|m| healthy(m));
    let usable = |m: &&Arc<UpstreamResource>| !any_healthy || healthy(m);
    let is_local = |m: &&Arc<UpstreamResource>| {
        usable(m) && !region.is_empty() && m.region.eq_ignore_ascii_case(region)
    };
    let local = members.iter().filter(is_local).count();
    if local > 0 {
        return members
            .iter()
            .filter(is_local)
            .nth(turn % local)
            .expect("counted above");
    }
    let rest = members.iter().filter(usable).count();
    members
        .iter()
        .filter(usable)
        .nth(turn % rest)
        .expect("at least one member")
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
            .map(|t| choose(&members, "eastus", t, all).id.as_str())
            .collect();
        assert_eq!(picks, ["b", "c", "b", "c"]);
        let picks: Vec<&str> = (0..3)
            .map(|t| choose(&members, "westeurope", t, all).id.as_str())
            .collect();
        assert_eq!(picks, ["a", "b", "c"]);
        // Unhealthy members are skipped, local ones first; with none healthy, all are used again.
        let not_b = |m: &UpstreamResource| m.id != "b";
        let picks: Vec<&str> = (0..2)
            .map(|t| choose(&members, "eastus", t, not_b).id.as_str())
            .collect();
        assert_eq!(picks, ["c", "c"]);
        let none = |_: &UpstreamResource| false;
        assert_eq!(choose(&members, "eastus", 0, none).id, "b");
    }
}
