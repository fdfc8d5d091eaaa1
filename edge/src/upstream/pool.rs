//! Choosing a pool member: members in the edge's own region first, round-robin among them; the
//! rest only when the region has none.

use std::sync::Arc;

use crate::snapshot::UpstreamResource;

pub fn choose<'a>(
    members: &'a [Arc<UpstreamResource>],
    region: &str,
    turn: usize,
) -> &'a Arc<UpstreamResource> {
    let is_local =
        |m: &&Arc<UpstreamResource>| !region.is_empty() && m.region.eq_ignore_ascii_case(region);
    let local = members.iter().filter(is_local).count();
    if local == 0 {
        &members[turn % members.len()]
    } else {
        members
            .iter()
            .filter(is_local)
            .nth(turn % local)
            .expect("counted above")
    }
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
        let picks: Vec<&str> = (0..4)
            .map(|t| choose(&members, "eastus", t).id.as_str())
            .collect();
        assert_eq!(picks, ["b", "c", "b", "c"]);
        let picks: Vec<&str> = (0..3)
            .map(|t| choose(&members, "westeurope", t).id.as_str())
            .collect();
        assert_eq!(picks, ["a", "b", "c"]);
    }
}
