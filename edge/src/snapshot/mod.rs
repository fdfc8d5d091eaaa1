//! The edge's whole world: an immutable catalog snapshot, swapped atomically on each update
//! (`arc-swap`), so a request sees the old snapshot or the new one, never a mix. Everything a
//! request needs is here, in memory: attendee key hashes, events, resources with their keys, and
//! the deployment pools derived from them.

mod apply;
mod attendees;
pub mod persist;

pub use attendees::{AttendeeEntry, Attendees};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aiproxy_proto::v1 as pb;
use aws_lc_rs::{constant_time, hmac};

use crate::maps::FastMap;

/// An upstream the edge can call.
pub struct UpstreamResource {
    pub id: String,
    pub friendly_name: String,
    pub deployment_name: String,
    pub model_type: String,
    pub endpoint_url: String,
    /// `scheme://authority` of the endpoint: Azure OpenAI paths are rooted there.
    pub origin: String,
    pub region: String,
    pub use_managed_identity: bool,
    /// Client id of the resource's user-assigned identity; empty for the proxy's own.
    pub identity_client_id: String,
    /// The scope of the managed-identity token this resource needs (empty: it uses a key).
    pub token_scope: String,
    pub active: bool,
    /// Chat calls have `max_tokens` renamed `max_completion_tokens` (reasoning models).
    pub use_max_completion_tokens: bool,
    pub api_key: Option<String>,
}

impl std::fmt::Debug for UpstreamResource {
    /// Everything but the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamResource")
            .field("id", &self.id)
            .field("deployment_name", &self.deployment_name)
            .field("model_type", &self.model_type)
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("use_managed_identity", &self.use_managed_identity)
            .field("active", &self.active)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A managed-identity token the control plane minted, ready to put on a request.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// `Bearer <token>`, marked sensitive so it is never logged.
    pub authorization: http::HeaderValue,
    pub expires_on_ms: i64,
}

/// model type → name → the active resources answering to that name in one event (nested, so a
/// request looks its pool up by `&str`, without building a key).
pub type EventPools = FastMap<String, FastMap<String, Vec<Arc<UpstreamResource>>>>;

/// The last key one client connection presented, and its hash. A keep-alive client presents the
/// same key on every call: its HMAC (about 6 % of a call's instructions) is then computed once
/// per connection instead of once per call. Only the hash is kept from call to call, never the
/// attendee: each call still looks the hash up in the snapshot of the moment, so a key
/// deactivated or removed is refused on the connection's next call. The presented key is
/// compared in constant time, as a front end may carry several clients' calls on one connection.
#[derive(Default)]
pub struct KeyMemo(Mutex<Option<Memo>>);

struct Memo {
    hasher: Arc<hmac::Key>,
    key: Vec<u8>,
    tag: hmac::Tag,
}

impl KeyMemo {
    fn tag(&self, hasher: &Arc<hmac::Key>, key: &[u8]) -> hmac::Tag {
        {
            let memo = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(memo) = memo.as_ref()
                && Arc::ptr_eq(&memo.hasher, hasher)
                && constant_time::verify_slices_are_equal(&memo.key, key).is_ok()
            {
                return memo.tag;
            }
        }
        let tag = hmac::sign(hasher, key);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Memo {
            hasher: hasher.clone(),
            key: key.to_vec(),
            tag,
        });
        tag
    }
}

#[derive(Default)]
pub struct CatalogSnapshot {
    /// False until a complete snapshot has arrived; the edge is not ready before.
    pub loaded: bool,
    pub version: u64,
    pub catalog_id: String,
    key_hash_secret: Vec<u8>,
    /// Rebuilt only when the secret changes: a [`KeyMemo`] knows its hashes by it.
    key_hasher: Option<Arc<hmac::Key>>,
    resources: FastMap<String, Arc<UpstreamResource>>,
    events: FastMap<String, Arc<pb::EventInfo>>,
    /// Shared by successive snapshots until a delta changes an attendee.
    attendees: Arc<Attendees>,
    /// event id → (model type, deployment name) → the active resources answering to that name.
    pools: FastMap<String, EventPools>,
    /// (identity client id, scope) → token.
    tokens: FastMap<(String, String), TokenEntry>,
}

impl CatalogSnapshot {
    /// The attendee a presented key is; `memo`, a client connection's, spares re-hashing the
    /// key that connection presented last.
    pub fn attendee_for_key(&self, key: &str, memo: Option<&KeyMemo>) -> Option<&AttendeeEntry> {
        let hasher = self.key_hasher.as_ref()?;
        let tag = match memo {
            Some(memo) => memo.tag(hasher, key.as_bytes()),
            None => hmac::sign(hasher, key.as_bytes()),
        };
        self.attendees.get(tag.as_ref())
    }

    pub fn event(&self, id: &str) -> Option<&Arc<pb::EventInfo>> {
        self.events.get(id)
    }

    /// The resources of `model_type` answering to `name` for `event_id` (a pool), if any.
    pub fn pool(
        &self,
        event_id: &str,
        model_type: &str,
        name: &str,
    ) -> Option<&[Arc<UpstreamResource>]> {
        self.pools
            .get(event_id)?
            .get(model_type)?
            .get(name)
            .map(Vec::as_slice)
            .filter(|members| !members.is_empty())
    }

    /// The names of an event's resources of `model_type`, sorted, without building the whole
    /// capability map (this runs on the request path of the agent and inference routes).
    pub fn names(&self, event_id: &str, model_type: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .pools
            .get(event_id)
            .and_then(|p| p.get(model_type))
            .into_iter()
            .flat_map(|names| names.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    /// What an event offers: model type → names, sorted (for `/eventinfo` and "not found" messages).
    pub fn capabilities(&self, event_id: &str) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (model_type, names) in self.pools.get(event_id).into_iter().flatten() {
            out.entry(model_type.clone())
                .or_default()
                .extend(names.keys().cloned());
        }
        out.values_mut().for_each(|names| names.sort());
        out
    }

    /// Everything this snapshot holds, as the full update that would rebuild it (for the state file).
    pub fn to_full_update(&self) -> pb::SyncUpdate {
        let resources = self
            .resources
            .values()
            .map(|r| pb::EdgeResource {
                info: Some(pb::ResourceInfo {
                    id: r.id.clone(),
                    friendly_name: r.friendly_name.clone(),
                    deployment_name: r.deployment_name.clone(),
                    model_type: r.model_type.clone(),
                    endpoint_url: r.endpoint_url.clone(),
                    region: r.region.clone(),
                    use_managed_identity: r.use_managed_identity,
                    identity_client_id: r.identity_client_id.clone(),
                    active: r.active,
                    has_key: r.api_key.is_some(),
                    use_max_completion_tokens: r.use_max_completion_tokens,
                }),
                api_key: r.api_key.clone().unwrap_or_default(),
                token_scope: r.token_scope.clone(),
            })
            .collect();
        let tokens = self
            .tokens
            .iter()
            .map(|((identity, scope), t)| pb::ManagedIdentityToken {
                identity_client_id: identity.clone(),
                scope: scope.clone(),
                access_token: t
                    .authorization
                    .to_str()
                    .unwrap_or("")
                    .trim_start_matches("Bearer ")
                    .to_string(),
                expires_on_ms: t.expires_on_ms,
            })
            .collect();
        pb::SyncUpdate {
            version: self.version,
            full: true,
            catalog_id: self.catalog_id.clone(),
            key_hash_secret: self.key_hash_secret.clone(),
            resources,
            events: self.events.values().map(|e| (**e).clone()).collect(),
            attendees: self.attendees.to_proto(),
            tokens_included: true,
            tokens,
            ..Default::default()
        }
    }

    pub fn resource(&self, id: &str) -> Option<&Arc<UpstreamResource>> {
        self.resources.get(id)
    }

    /// A resource `event_id` exposes and that is active (where that event's objects may be reached).
    pub fn event_resource(
        &self,
        event_id: &str,
        resource_id: &str,
    ) -> Option<&Arc<UpstreamResource>> {
        let event = self.events.get(event_id)?;
        if !event.resource_ids.iter().any(|id| id == resource_id) {
            return None;
        }
        self.resources.get(resource_id).filter(|r| r.active)
    }

    /// The token for a managed-identity resource, if one is held (whatever its expiry).
    pub fn token_for(&self, resource: &UpstreamResource) -> Option<&TokenEntry> {
        self.tokens.get(&(
            resource.identity_client_id.clone(),
            resource.token_scope.clone(),
        ))
    }

    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }
}
