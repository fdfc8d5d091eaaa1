//! Building the next snapshot from the current one and a `SyncUpdate`. A full update replaces
//! everything; a delta applies only on top of the exact version it was made from. Any problem
//! leaves the current snapshot untouched (the caller NACKs).

use std::sync::Arc;

use aiproxy_proto::v1 as pb;
use aws_lc_rs::hmac;

use super::{CatalogSnapshot, EventPools, TokenEntry, UpstreamResource};
use crate::maps::FastMap;

impl CatalogSnapshot {
    pub fn apply(&self, update: pb::SyncUpdate) -> Result<CatalogSnapshot, String> {
        let mut next = if update.full {
            if update.key_hash_secret.is_empty() {
                return Err("full snapshot without key_hash_secret".into());
            }
            CatalogSnapshot {
                key_hash_secret: update.key_hash_secret.clone(),
                ..Default::default()
            }
        } else {
            if !self.loaded {
                return Err("delta received before any full snapshot".into());
            }
            if update.base_version != self.version || update.catalog_id != self.catalog_id {
                return Err(format!(
                    "delta from version {} of catalog {} does not apply to version {} of catalog {}",
                    update.base_version, update.catalog_id, self.version, self.catalog_id
                ));
            }
            CatalogSnapshot {
                key_hash_secret: self.key_hash_secret.clone(),
                resources: self.resources.clone(),
                events: self.events.clone(),
                attendees: self.attendees.clone(),
                tokens: self.tokens.clone(),
                ..Default::default()
            }
        };
        if update.tokens_included {
            next.tokens = tokens(update.tokens)?;
            if update.catalog_id == self.catalog_id {
                keep_valid_tokens(&self.tokens, &mut next.tokens);
            }
        }
        if update.version < self.version && !update.full {
            return Err(format!(
                "update version {} is older than the held {}",
                update.version, self.version
            ));
        }

        for resource in update.resources {
            let upstream = upstream_resource(resource)?;
            next.resources
                .insert(upstream.id.clone(), Arc::new(upstream));
        }
        for event in update.events {
            next.events.insert(event.id.clone(), Arc::new(event));
        }
        if !update.attendees.is_empty() {
            let attendees = Arc::make_mut(&mut next.attendees);
            for attendee in update.attendees {
                attendees.upsert(attendee)?;
            }
        }
        for removal in update.removals {
            match pb::ObjectKind::try_from(removal.kind) {
                Ok(pb::ObjectKind::Resource) => {
                    next.resources.remove(&removal.id);
                }
                Ok(pb::ObjectKind::Event) => {
                    next.events.remove(&removal.id);
                    Arc::make_mut(&mut next.attendees).remove_event(&removal.id);
                }
                Ok(pb::ObjectKind::Attendee) => {
                    if let Some((event_id, user_id)) = removal.id.split_once('/') {
                        Arc::make_mut(&mut next.attendees).remove(event_id, user_id);
                    }
                }
                _ => return Err(format!("removal of unknown kind {}", removal.kind)),
            }
        }

        next.loaded = true;
        next.version = update.version;
        next.catalog_id = update.catalog_id;
        next.key_hasher = match &self.key_hasher {
            Some(hasher) if self.key_hash_secret == next.key_hash_secret => Some(hasher.clone()),
            _ => Some(Arc::new(hmac::Key::new(
                hmac::HMAC_SHA256,
                &next.key_hash_secret,
            ))),
        };
        next.rebuild_pools();
        Ok(next)
    }

    /// A delta that changes no catalog entry and brings the tokens already held.
    pub fn unchanged_by(&self, update: &pb::SyncUpdate) -> bool {
        let same_tokens = !update.tokens_included
            || (update.tokens.len() == self.tokens.len()
                && update.tokens.iter().all(|t| {
                    self.tokens
                        .get(&(t.identity_client_id.clone(), t.scope.clone()))
                        .is_some_and(|held| {
                            held.expires_on_ms == t.expires_on_ms
                                && held.authorization.as_bytes().get(7..)
                                    == Some(t.access_token.as_bytes())
                        })
                }));
        self.loaded
            && !update.full
            && update.version == self.version
            && update.base_version == self.version
            && update.catalog_id == self.catalog_id
            && update.resources.is_empty()
            && update.events.is_empty()
            && update.attendees.is_empty()
            && update.removals.is_empty()
            && same_tokens
    }

    fn rebuild_pools(&mut self) {
        let mut pools: FastMap<String, EventPools> = FastMap::default();
        for event in self.events.values() {
            let event_pools = pools.entry(event.id.clone()).or_default();
            for rid in &event.resource_ids {
                if let Some(r) = self.resources.get(rid).filter(|r| r.active) {
                    event_pools
                        .entry(r.model_type.clone())
                        .or_default()
                        .entry(r.deployment_name.clone())
                        .or_default()
                        .push(r.clone());
                }
            }
        }
        self.pools = pools;
    }
}

fn tokens(
    tokens: Vec<pb::ManagedIdentityToken>,
) -> Result<FastMap<(String, String), TokenEntry>, String> {
    tokens
        .into_iter()
        .map(|t| {
            let mut authorization =
                http::HeaderValue::from_str(&format!("Bearer {}", t.access_token))
                    .map_err(|_| format!("token for {} is not a valid header value", t.scope))?;
            authorization.set_sensitive(true);
            Ok((
                (t.identity_client_id, t.scope),
                TokenEntry {
                    authorization,
                    expires_on_ms: t.expires_on_ms,
                },
            ))
        })
        .collect()
}

/// An update lists every token its control plane holds, but a control plane that has just
/// started (tokens cached in memory) serves its first updates before its first mint, and one
/// replica may not yet hold what another minted. So an update of the same catalog that lacks a
/// token this edge holds does not take it away while the token is valid; it goes at expiry.
fn keep_valid_tokens(
    held: &FastMap<(String, String), TokenEntry>,
    next: &mut FastMap<(String, String), TokenEntry>,
) {
    let now = chrono::Utc::now().timestamp_millis();
    for (key, token) in held {
        if token.expires_on_ms > now && !next.contains_key(key) {
            next.insert(key.clone(), token.clone());
        }
    }
}

fn upstream_resource(resource: pb::EdgeResource) -> Result<UpstreamResource, String> {
    let info = resource.info.ok_or("resource without info")?;
    let uri: http::Uri = info
        .endpoint_url
        .parse()
        .map_err(|_| format!("resource {} has an invalid endpoint_url", info.id))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("resource {} endpoint_url is not absolute", info.id));
    };
    Ok(UpstreamResource {
        origin: format!("{scheme}://{authority}"),
        id: info.id,
        friendly_name: info.friendly_name,
        deployment_name: info.deployment_name,
        model_type: info.model_type,
        endpoint_url: info.endpoint_url,
        region: info.region,
        use_managed_identity: info.use_managed_identity,
        identity_client_id: info.identity_client_id,
        token_scope: resource.token_scope,
        active: info.active,
        use_max_completion_tokens: info.use_max_completion_tokens,
        api_key: Some(resource.api_key).filter(|k| !k.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::KeyMemo;

    fn resource(id: &str, deployment: &str) -> pb::EdgeResource {
        pb::EdgeResource {
            info: Some(pb::ResourceInfo {
                id: id.into(),
                friendly_name: id.into(),
                deployment_name: deployment.into(),
                model_type: "foundry-model".into(),
                endpoint_url: "https://x.openai.azure.com".into(),
                active: true,
                has_key: true,
                ..Default::default()
            }),
            api_key: "k".into(),
            ..Default::default()
        }
    }

    fn full(version: u64) -> pb::SyncUpdate {
        pb::SyncUpdate {
            version,
            full: true,
            catalog_id: "c1".into(),
            key_hash_secret: vec![7; 32],
            resources: vec![resource("r1", "gpt")],
            events: vec![pb::EventInfo {
                id: "e1".into(),
                resource_ids: vec!["r1".into()],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn attendee(secret: u8, key: &str, user: &str, active: bool) -> pb::EdgeAttendee {
        let hasher = hmac::Key::new(hmac::HMAC_SHA256, &[secret; 32]);
        pb::EdgeAttendee {
            event_id: "e1".into(),
            user_id: user.into(),
            key_hash: hmac::sign(&hasher, key.as_bytes()).as_ref().to_vec(),
            active,
        }
    }

    /// A connection's memo spares the hash, never the look-up: each call finds the attendee as
    /// the snapshot of the moment has it, and a new secret is never answered with an old hash.
    #[test]
    fn a_connections_key_memo_follows_the_snapshot() {
        let mut first = full(3);
        first.attendees = vec![
            attendee(7, "key-ada", "ada", true),
            attendee(7, "key-bob", "bob", true),
        ];
        let s = CatalogSnapshot::default().apply(first).unwrap();
        let memo = KeyMemo::default();
        let who = |s: &CatalogSnapshot, key: &str| {
            s.attendee_for_key(key, Some(&memo))
                .map(|a| (a.user_id.to_string(), a.active))
        };
        let ada = Some(("ada".to_string(), true));
        assert_eq!(who(&s, "key-ada"), ada);
        assert_eq!(who(&s, "key-ada"), ada);
        // Keys that start or extend the remembered one are hashed on their own.
        assert_eq!(who(&s, "key-ad"), None);
        assert_eq!(who(&s, "key-adaa"), None);
        assert_eq!(who(&s, "key-bob"), Some(("bob".to_string(), true)));
        assert_eq!(who(&s, "key-ada"), ada);

        let deactivated = pb::SyncUpdate {
            version: 4,
            base_version: 3,
            catalog_id: "c1".into(),
            attendees: vec![attendee(7, "key-ada", "ada", false)],
            ..Default::default()
        };
        let s2 = s.apply(deactivated).unwrap();
        assert!(Arc::ptr_eq(
            s.key_hasher.as_ref().unwrap(),
            s2.key_hasher.as_ref().unwrap()
        ));
        assert_eq!(who(&s2, "key-ada"), Some(("ada".to_string(), false)));

        let mut rotated = full(5);
        rotated.key_hash_secret = vec![9; 32];
        rotated.attendees = vec![attendee(9, "key-ada", "ada", true)];
        let s3 = s2.apply(rotated).unwrap();
        assert_eq!(who(&s3, "key-ada"), ada);
        assert_eq!(who(&s3, "key-bob"), None);
        assert_eq!(
            s3.attendee_for_key("key-ada", None).map(|a| a.active),
            Some(true)
        );
    }

    #[test]
    fn full_then_delta_builds_pools_and_removes() {
        let s = CatalogSnapshot::default().apply(full(3)).unwrap();
        assert!(s.loaded);
        assert_eq!(s.pool("e1", "foundry-model", "gpt").unwrap().len(), 1);
        assert_eq!(s.names("e1", "foundry-model"), ["gpt"]);
        assert!(s.names("e1", "foundry-agent").is_empty());
        let delta = pb::SyncUpdate {
            version: 4,
            base_version: 3,
            catalog_id: "c1".into(),
            removals: vec![pb::Removal {
                kind: pb::ObjectKind::Event as i32,
                id: "e1".into(),
            }],
            ..Default::default()
        };
        let s2 = s.apply(delta).unwrap();
        assert!(s2.pool("e1", "foundry-model", "gpt").is_none());
        assert_eq!(s2.version, 4);
    }

    fn token(scope: &str, access_token: &str, expires_on_ms: i64) -> pb::ManagedIdentityToken {
        pb::ManagedIdentityToken {
            identity_client_id: String::new(),
            scope: scope.into(),
            access_token: access_token.into(),
            expires_on_ms,
        }
    }

    fn held(s: &CatalogSnapshot) -> Vec<(String, String)> {
        let mut held: Vec<(String, String)> = s
            .tokens
            .iter()
            .map(|((_, scope), t)| (scope.clone(), t.authorization.to_str().unwrap().into()))
            .collect();
        held.sort();
        held
    }

    /// A control plane that restarted with its tokens in memory sends a full snapshot before its
    /// first mint: the edge keeps serving with the valid token it holds, not with none.
    #[test]
    fn an_update_that_lacks_a_valid_token_does_not_take_it_away() {
        let hour = chrono::Utc::now().timestamp_millis() + 3_600_000;
        let past = chrono::Utc::now().timestamp_millis() - 1;
        let mut first = full(3);
        first.tokens_included = true;
        first.tokens = vec![token("cog", "t1", hour), token("old", "t0", past)];
        let s = CatalogSnapshot::default().apply(first).unwrap();
        let mut restarted = full(4);
        restarted.tokens_included = true;
        restarted.tokens = vec![token("search", "t2", hour)];
        let s2 = s.apply(restarted.clone()).unwrap();
        assert_eq!(
            held(&s2),
            [
                ("cog".to_string(), "Bearer t1".to_string()),
                ("search".to_string(), "Bearer t2".to_string())
            ],
            "the valid token is kept, the expired one goes, the new one comes"
        );
        // A newer token for the same scope replaces the held one.
        let mut refreshed = full(5);
        refreshed.tokens_included = true;
        refreshed.tokens = vec![token("cog", "t3", hour)];
        assert!(held(&s2.apply(refreshed).unwrap()).contains(&("cog".into(), "Bearer t3".into())));
        // Another catalog's control plane: nothing of this one's is kept.
        let mut other = restarted;
        other.catalog_id = "c2".into();
        assert_eq!(
            held(&s.apply(other).unwrap()),
            [("search".to_string(), "Bearer t2".to_string())]
        );
    }

    #[test]
    fn delta_on_the_wrong_base_is_rejected() {
        let s = CatalogSnapshot::default().apply(full(3)).unwrap();
        let delta = pb::SyncUpdate {
            version: 6,
            base_version: 5,
            catalog_id: "c1".into(),
            ..Default::default()
        };
        assert!(s.apply(delta).is_err());
        let unloaded = CatalogSnapshot::default();
        let delta = pb::SyncUpdate {
            version: 1,
            base_version: 0,
            ..Default::default()
        };
        assert!(unloaded.apply(delta).is_err());
    }

    proptest::proptest! {
        /// Whatever a (corrupt or hostile) update holds, applying it answers, never panics.
        #[test]
        fn applying_any_update_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            use prost::Message;
            if let Ok(update) = pb::SyncUpdate::decode(bytes.as_slice()) {
                let base = CatalogSnapshot::default().apply(full(3)).unwrap();
                let _ = base.apply(update.clone());
                let _ = CatalogSnapshot::default().apply(update);
            }
        }
    }
}
