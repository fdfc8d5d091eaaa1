//! Who owns which Foundry object (agent, thread, file, vector store, conversation, response).
//! Attendees of an event share one project upstream, so every object created through the proxy
//! is recorded against its creator in the control plane's database — not in the catalog, which
//! must stay proportional to resources, events and attendees. Edges look owners up on demand, in
//! one batched call per request, and keep a bounded cache: positive entries until the record
//! expires or the Sync stream says the object was forgotten, negative entries for a few seconds
//! (an id may be recorded through another edge a moment later).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aiproxy_proto::v1 as pb;

use crate::control_calls::ControlPlaneCalls;

/// The kinds of object the proxy keeps apart. `Assistant` is the classic agents API
/// (`/assistants`), `Agent` the named agents of the new API (`/agents`, `agent_reference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Assistant,
    Agent,
    Thread,
    File,
    VectorStore,
    Conversation,
    Response,
}

impl ObjectKind {
    /// The kind as recorded by the control plane.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Assistant => "assistant",
            ObjectKind::Agent => "agent",
            ObjectKind::Thread => "thread",
            ObjectKind::File => "file",
            ObjectKind::VectorStore => "vector_store",
            ObjectKind::Conversation => "conversation",
            ObjectKind::Response => "response",
        }
    }

    /// What a person calls it (error messages).
    pub fn label(self) -> &'static str {
        match self {
            ObjectKind::Assistant | ObjectKind::Agent => "agent",
            ObjectKind::Thread => "thread",
            ObjectKind::File => "file",
            ObjectKind::VectorStore => "vector store",
            ObjectKind::Conversation => "conversation",
            ObjectKind::Response => "response",
        }
    }

    /// The upstream collection path (after the project endpoint, or a model resource's origin).
    pub fn collection(self) -> &'static str {
        match self {
            ObjectKind::Assistant => "/assistants",
            ObjectKind::Agent => "/agents",
            ObjectKind::Thread => "/threads",
            ObjectKind::File => "/files",
            ObjectKind::VectorStore => "/vector_stores",
            ObjectKind::Conversation => "/openai/v1/conversations",
            ObjectKind::Response => "/openai/v1/responses",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            ObjectKind::Assistant,
            ObjectKind::Agent,
            ObjectKind::Thread,
            ObjectKind::File,
            ObjectKind::VectorStore,
            ObjectKind::Conversation,
            ObjectKind::Response,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One object named by kind and id.
pub type ObjectKey = (ObjectKind, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub event_id: String,
    pub user_id: String,
    /// The resource the object lives on upstream.
    pub resource_id: String,
    /// Unix ms after which the record no longer counts (0: never).
    pub expires_at_ms: i64,
}

impl Owner {
    fn from_record(o: &pb::OwnedObject) -> Self {
        Self {
            event_id: o.event_id.clone(),
            user_id: o.user_id.clone(),
            resource_id: o.resource_id.clone(),
            expires_at_ms: o.expires_at_ms,
        }
    }

    fn live(&self, now_ms: i64) -> bool {
        self.expires_at_ms == 0 || now_ms < self.expires_at_ms
    }
}

enum Cached {
    /// With when it was learnt: kept at most `POSITIVE_TTL_MS`, so an edge whose Sync stream lags
    /// cannot keep allowing a deleted (and re-created) object for long.
    Known(Arc<Owner>, i64),
    Unknown {
        until_ms: i64,
    },
}

const POSITIVE_TTL_MS: i64 = 60_000;

pub struct Ownership {
    cache: Mutex<HashMap<ObjectKey, Cached>>,
    capacity: usize,
    negative_ttl_ms: i64,
    /// Moves on every invalidation, so a lookup that raced one does not cache a stale answer.
    generation: AtomicU64,
}

impl Ownership {
    pub fn new(capacity: usize, negative_ttl_ms: i64) -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            capacity: capacity.max(16),
            negative_ttl_ms,
            generation: AtomicU64::new(0),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ObjectKey, Cached>) -> R) -> R {
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The owner of each of `keys` (in order; `None`: not recorded, or expired), from the cache,
    /// else from the control plane in one call.
    pub async fn owners(
        &self,
        control: &ControlPlaneCalls,
        keys: &[ObjectKey],
        now_ms: i64,
    ) -> Result<Vec<Option<Arc<Owner>>>, String> {
        let mut answers: Vec<Option<Option<Arc<Owner>>>> = self.with(|cache| {
            keys.iter()
                .map(|key| match cache.get(key) {
                    Some(Cached::Known(owner, at))
                        if owner.live(now_ms) && now_ms - at < POSITIVE_TTL_MS =>
                    {
                        Some(Some(owner.clone()))
                    }
                    Some(Cached::Unknown { until_ms }) if now_ms < *until_ms => Some(None),
                    _ => None,
                })
                .collect()
        });
        let missing: Vec<&ObjectKey> = keys
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .map(|(key, _)| key)
            .collect();
        if !missing.is_empty() {
            let generation = self.generation.load(Ordering::Acquire);
            let refs = missing
                .iter()
                .map(|(kind, id)| pb::ObjectRef {
                    kind: kind.as_str().to_string(),
                    id: id.clone(),
                })
                .collect();
            let found: HashMap<ObjectKey, Arc<Owner>> = control
                .lookup(refs)
                .await?
                .iter()
                .filter_map(|o| {
                    let kind = ObjectKind::parse(&o.kind)?;
                    Some(((kind, o.id.clone()), Arc::new(Owner::from_record(o))))
                })
                .filter(|(_, owner)| owner.live(now_ms))
                .collect();
            let fresh = self.generation.load(Ordering::Acquire) == generation;
            self.with(|cache| {
                if fresh {
                    self.make_room(cache, missing.len(), now_ms);
                }
                for (key, answer) in keys.iter().zip(answers.iter_mut()) {
                    if answer.is_some() {
                        continue;
                    }
                    let owner = found.get(key).cloned();
                    if fresh {
                        let entry = match &owner {
                            Some(owner) => Cached::Known(owner.clone(), now_ms),
                            None => Cached::Unknown {
                                until_ms: now_ms + self.negative_ttl_ms,
                            },
                        };
                        cache.insert(key.clone(), entry);
                    }
                    *answer = Some(owner);
                }
            });
        }
        Ok(answers.into_iter().map(Option::flatten).collect())
    }

    /// An object this edge just recorded.
    pub fn remember(&self, key: ObjectKey, owner: Owner, now_ms: i64) {
        self.with(|cache| {
            self.make_room(cache, 1, now_ms);
            cache.insert(key, Cached::Known(Arc::new(owner), now_ms));
        });
    }

    /// The object was deleted (here, or through another edge: a Sync invalidation).
    pub fn forget(&self, key: &ObjectKey) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.with(|cache| cache.remove(key));
    }

    /// Invalidations by their wire form; unknown kinds are ignored (nothing of theirs is cached).
    pub fn forget_refs(&self, refs: &[pb::ObjectRef]) {
        for r in refs {
            if let Some(kind) = ObjectKind::parse(&r.kind) {
                self.forget(&(kind, r.id.clone()));
            }
        }
    }

    /// Drops everything (a new Sync session: invalidations may have been missed meanwhile).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.with(HashMap::clear);
    }

    pub fn len(&self) -> usize {
        self.with(|cache| cache.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the cache under its bound: expired entries go first, then an arbitrary eighth
    /// (a `HashMap`'s order is random per process, so no attendee can aim the eviction).
    fn make_room(&self, cache: &mut HashMap<ObjectKey, Cached>, adding: usize, now_ms: i64) {
        if cache.len() + adding <= self.capacity {
            return;
        }
        cache.retain(|_, entry| match entry {
            Cached::Known(owner, at) => owner.live(now_ms) && now_ms - *at < POSITIVE_TTL_MS,
            Cached::Unknown { until_ms } => now_ms < *until_ms,
        });
        if cache.len() + adding > self.capacity {
            let drop: Vec<ObjectKey> = cache
                .keys()
                .take((self.capacity / 8).max(adding))
                .cloned()
                .collect();
            for key in drop {
                cache.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str) -> Owner {
        Owner {
            event_id: "e".into(),
            user_id: user.into(),
            resource_id: "r".into(),
            expires_at_ms: 0,
        }
    }

    #[test]
    fn cache_stays_bounded_and_forgets() {
        let o = Ownership::new(16, 1000);
        for i in 0..100 {
            o.remember((ObjectKind::Thread, format!("thread_{i}")), owner("a"), 0);
            assert!(o.len() <= 16);
        }
        let key = (ObjectKind::File, "file-1".to_string());
        o.remember(key.clone(), owner("a"), 0);
        assert!(o.with(|c| c.contains_key(&key)));
        o.forget(&key);
        assert!(!o.with(|c| c.contains_key(&key)));
        o.clear();
        assert!(o.is_empty());
    }

    #[tokio::test]
    async fn a_known_owner_is_asked_again_after_the_positive_ttl() {
        // Nothing listens on loopback port 9: asking the control plane fails at once.
        let control = ControlPlaneCalls::new(
            "http://127.0.0.1:9",
            "token",
            std::time::Duration::from_millis(250),
        )
        .unwrap();
        let o = Ownership::new(16, 1000);
        let key = (ObjectKind::Agent, "helper".to_string());
        o.remember(key.clone(), owner("a"), 0);
        let cached = o
            .owners(&control, std::slice::from_ref(&key), 1_000)
            .await
            .unwrap();
        assert_eq!(cached[0].as_ref().unwrap().user_id, "a");
        assert!(
            o.owners(&control, &[key], POSITIVE_TTL_MS + 1)
                .await
                .is_err(),
            "an owner older than the TTL must be looked up again"
        );
    }

    #[test]
    fn kinds_round_trip_and_label_agents_alike() {
        for kind in [
            ObjectKind::Assistant,
            ObjectKind::VectorStore,
            ObjectKind::Response,
        ] {
            assert_eq!(ObjectKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ObjectKind::Assistant.label(), ObjectKind::Agent.label());
    }
}
