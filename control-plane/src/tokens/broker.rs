//! The token broker: knows which (identity, scope) pairs the catalog's active managed-identity
//! resources need, keeps a token for each, refreshes it on schedule (half-life with jitter), adopts
//! a token another replica put in the shared cache instead of minting, lets only the lock holder
//! mint, backs off after failures while the current token stays in use, and tells the Sync streams
//! when the set of tokens changed. Nothing is minted (and no credential probed) until a resource
//! needs it. Each (identity, scope) is looked after by its own task, so a credential that hangs
//! for one of them (a tool waiting on a prompt) never lets the others expire.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiproxy_proto::v1 as pb;
use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument as _;

use super::cache::{CachedToken, TokenCache};
use super::refresh::{next_backoff, random_jitter, refresh_at_ms};
use crate::catalog::store::CatalogStore;
use crate::identity::{AccessToken, Scope, TokenKey, TokenProvider};

/// Something that can mint a token (the credential provider; fakes in tests).
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn mint(&self, key: &TokenKey) -> Result<(AccessToken, String), String>;
}

#[async_trait]
impl TokenSource for TokenProvider {
    async fn mint(&self, key: &TokenKey) -> Result<(AccessToken, String), String> {
        self.token(key).await
    }
}

#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// First wait after a failed refresh; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a replica may hold the mint lock.
    pub lock_ttl: Duration,
    /// How often the broker looks at its tokens.
    pub tick: Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
            lock_ttl: Duration::from_secs(60),
            tick: Duration::from_millis(500),
        }
    }
}

#[derive(Default)]
struct KeyState {
    token: Option<CachedToken>,
    refresh_at_ms: i64,
    next_attempt_ms: i64,
    backoff: Duration,
    last_error: Option<String>,
}

/// What the admin API shows for one (identity, scope); never the token.
#[derive(Debug, Clone)]
pub struct TokenStatus {
    pub expires_on_ms: Option<i64>,
    pub source: Option<String>,
    pub last_error: Option<String>,
    pub next_attempt_ms: Option<i64>,
}

pub struct TokenBroker {
    source: Arc<dyn TokenSource>,
    cache: Arc<dyn TokenCache>,
    settings: BrokerSettings,
    states: Mutex<HashMap<TokenKey, KeyState>>,
    generation: watch::Sender<u64>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl TokenBroker {
    pub fn new(
        source: Arc<dyn TokenSource>,
        cache: Arc<dyn TokenCache>,
        settings: BrokerSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            source,
            cache,
            settings,
            states: Mutex::default(),
            generation: watch::channel(0).0,
        })
    }

    /// Moves whenever the set of usable tokens changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    fn with_states<R>(&self, f: impl FnOnce(&mut HashMap<TokenKey, KeyState>) -> R) -> R {
        f(&mut self.states.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Every unexpired token, for the edges.
    pub fn edge_tokens(&self) -> Vec<pb::ManagedIdentityToken> {
        let now = now_ms();
        self.with_states(|states| {
            let mut tokens: Vec<pb::ManagedIdentityToken> = states
                .iter()
                .filter_map(|(key, st)| st.token.as_ref().map(|t| (key, t)))
                .filter(|(_, t)| t.expires_on_ms > now)
                .map(|(key, t)| pb::ManagedIdentityToken {
                    identity_client_id: key.identity_client_id.clone().unwrap_or_default(),
                    scope: key.scope.as_str().to_string(),
                    access_token: t.token.expose().to_string(),
                    expires_on_ms: t.expires_on_ms,
                })
                .collect();
            tokens.sort_by(|a, b| {
                (&a.identity_client_id, &a.scope).cmp(&(&b.identity_client_id, &b.scope))
            });
            tokens
        })
    }

    pub fn status(&self, key: &TokenKey) -> Option<TokenStatus> {
        self.with_states(|states| {
            states.get(key).map(|st| TokenStatus {
                expires_on_ms: st.token.as_ref().map(|t| t.expires_on_ms),
                source: st.token.as_ref().map(|t| t.source.clone()),
                last_error: st.last_error.clone(),
                next_attempt_ms: (st.next_attempt_ms > now_ms()).then_some(st.next_attempt_ms),
            })
        })
    }

    /// When each held token expires (ms since the epoch), per (identity, scope); never the token.
    pub fn expiries(&self) -> Vec<(TokenKey, i64)> {
        self.with_states(|states| {
            states
                .iter()
                .filter_map(|(key, st)| st.token.as_ref().map(|t| (key.clone(), t.expires_on_ms)))
                .collect()
        })
    }

    /// Runs the broker: follows catalog changes to know what is needed, and keeps those tokens fresh.
    pub fn spawn(
        self: Arc<Self>,
        store: Arc<dyn CatalogStore>,
        mut catalog: watch::Receiver<u64>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut needed: BTreeSet<TokenKey> = BTreeSet::new();
            let mut seen: Option<u64> = None;
            // Dropped with this task, which aborts every refresh still running.
            let mut refreshes = JoinSet::new();
            let mut in_flight: HashMap<TokenKey, AbortHandle> = HashMap::new();
            loop {
                let version = *catalog.borrow_and_update();
                if seen != Some(version) {
                    match needed_keys(store.as_ref()).await {
                        Ok(keys) => {
                            needed = keys;
                            seen = Some(version);
                            self.forget_unneeded(&needed);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read the managed-identity resources")
                        }
                    }
                }
                while refreshes.try_join_next().is_some() {}
                in_flight.retain(|key, task| {
                    if !needed.contains(key) {
                        task.abort();
                        return false;
                    }
                    !task.is_finished()
                });
                for key in &needed {
                    if in_flight.contains_key(key) {
                        continue;
                    }
                    let (broker, owned) = (self.clone(), key.clone());
                    let task = refreshes.spawn(async move { broker.maintain(&owned).await });
                    in_flight.insert(key.clone(), task);
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.tick) => {}
                    changed = catalog.changed() => if changed.is_err() { return },
                }
            }
        })
    }

    fn forget_unneeded(&self, needed: &BTreeSet<TokenKey>) {
        let removed = self.with_states(|states| {
            let before = states.len();
            states.retain(|k, _| needed.contains(k));
            before != states.len()
        });
        if removed {
            self.changed();
        }
    }

    /// One look at one key: nothing to do, adopt the shared cache's newer token, or mint.
    pub async fn maintain(&self, key: &TokenKey) {
        let now = now_ms();
        let (due, held_expiry) = self.with_states(|states| {
            let st = states.entry(key.clone()).or_default();
            let held = st.token.as_ref().map(|t| t.expires_on_ms);
            let due = held.is_none_or(|exp| exp <= now) || now >= st.refresh_at_ms;
            (due && now >= st.next_attempt_ms, held)
        });
        if !due {
            return;
        }
        if self.adopt_from_cache(key, held_expiry, now).await {
            return;
        }
        let lock = match self.cache.try_lock(key, self.settings.lock_ttl).await {
            Ok(Some(id)) => Some(id),
            // Another replica is minting; its token will be in the cache on a later look.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%key, error = %e, "token cache unavailable; minting without the shared lock");
                None
            }
        };
        if !self.adopt_from_cache(key, held_expiry, now).await {
            self.mint(key).await;
        }
        if let Some(id) = lock
            && let Err(e) = self.cache.unlock(key, &id).await
        {
            tracing::warn!(%key, error = %e, "could not release the token lock (it expires by itself)");
        }
    }

    /// Takes the shared cache's token when it is newer than ours and not itself due for refresh.
    async fn adopt_from_cache(&self, key: &TokenKey, held_expiry: Option<i64>, now: i64) -> bool {
        let cached = match self.cache.get(key).await {
            Ok(Some(t)) => t,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(%key, error = %e, "token cache read failed");
                return false;
            }
        };
        let refresh_at = refresh_at_ms(cached.issued_at_ms, cached.expires_on_ms, random_jitter());
        if refresh_at <= now || held_expiry.is_some_and(|held| cached.expires_on_ms <= held) {
            return false;
        }
        tracing::info!(%key, source = %cached.source, "using the token another replica minted");
        self.install(key, cached, refresh_at);
        true
    }

    fn install(&self, key: &TokenKey, token: CachedToken, refresh_at_ms: i64) {
        self.with_states(|states| {
            let st = states.entry(key.clone()).or_default();
            st.token = Some(token);
            st.refresh_at_ms = refresh_at_ms;
            st.backoff = Duration::ZERO;
            st.next_attempt_ms = 0;
            st.last_error = None;
        });
        self.changed();
    }

    async fn mint(&self, key: &TokenKey) {
        // Which identity, for which scope, by which credential: never the token.
        let span = tracing::info_span!(
            target: aiproxy_telemetry::SPAN_TARGET,
            "aiproxy.token.mint",
            otel.status_code = tracing::field::Empty,
            aiproxy.identity = key.identity_label(),
            aiproxy.token.scope = key.scope.as_str(),
            aiproxy.credential = tracing::field::Empty,
            aiproxy.token.expires_in_s = tracing::field::Empty,
        );
        let issued_at_ms = now_ms();
        let minted = self.source.mint(key).instrument(span.clone()).await;
        match &minted {
            Ok((token, source)) => {
                span.record("aiproxy.credential", source.as_str());
                span.record(
                    "aiproxy.token.expires_in_s",
                    (token.expires_on_ms - issued_at_ms) / 1000,
                );
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        drop(span);
        match minted {
            Ok((token, source)) => {
                let cached = CachedToken {
                    token: token.token,
                    expires_on_ms: token.expires_on_ms,
                    issued_at_ms,
                    source,
                };
                if let Err(e) = self.cache.put(key, &cached).await {
                    tracing::warn!(%key, error = %e, "could not share the new token through the cache");
                }
                let refresh_at = refresh_at_ms(issued_at_ms, cached.expires_on_ms, random_jitter());
                tracing::info!(
                    %key,
                    credential = %cached.source,
                    expires_in_s = (cached.expires_on_ms - issued_at_ms) / 1000,
                    refresh_in_s = (refresh_at - issued_at_ms) / 1000,
                    "managed-identity token minted"
                );
                self.install(key, cached, refresh_at);
            }
            Err(error) => {
                crate::metrics::metrics().mint_failed(key);
                let (backoff, keeps) = self.with_states(|states| {
                    let st = states.entry(key.clone()).or_default();
                    st.backoff = next_backoff(
                        st.backoff,
                        self.settings.min_backoff,
                        self.settings.max_backoff,
                    );
                    st.next_attempt_ms = now_ms() + st.backoff.as_millis() as i64;
                    st.last_error = Some(error.clone());
                    (
                        st.backoff,
                        st.token
                            .as_ref()
                            .is_some_and(|t| t.expires_on_ms > now_ms()),
                    )
                });
                tracing::warn!(
                    %key,
                    retry_in_s = backoff.as_secs(),
                    current_token_still_used = keeps,
                    %error,
                    "managed-identity token refresh failed"
                );
            }
        }
    }
}

/// The (identity, scope) pairs the active managed-identity resources need.
pub async fn needed_keys(store: &dyn CatalogStore) -> Result<BTreeSet<TokenKey>, String> {
    let resources = store.list_resources().await.map_err(|e| e.to_string())?;
    Ok(resources
        .iter()
        .filter(|r| r.active && r.use_managed_identity)
        .filter_map(|r| {
            Scope::for_model_type(r.model_type).map(|scope| TokenKey {
                identity_client_id: r.identity_client_id.clone(),
                scope,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::catalog::model::{ModelType, Resource};
    use crate::secrets::Secret;
    use crate::tokens::MemoryTokenCache;

    struct FakeSource {
        calls: AtomicUsize,
        failing: AtomicBool,
        lifetime_ms: i64,
    }

    #[async_trait]
    impl TokenSource for FakeSource {
        async fn mint(&self, _: &TokenKey) -> Result<(AccessToken, String), String> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err("identity endpoint answered 500".into());
            }
            let token = AccessToken {
                token: Secret::new(format!("token-{n}")),
                expires_on_ms: now_ms() + self.lifetime_ms,
            };
            Ok((token, "FakeCredential".into()))
        }
    }

    fn source(lifetime_ms: i64) -> Arc<FakeSource> {
        Arc::new(FakeSource {
            calls: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            lifetime_ms,
        })
    }

    fn key() -> TokenKey {
        TokenKey {
            identity_client_id: None,
            scope: Scope::CognitiveServices,
        }
    }

    #[tokio::test]
    async fn mints_once_and_reuses() {
        let src = source(3_600_000);
        let broker = TokenBroker::new(
            src.clone(),
            Arc::new(MemoryTokenCache::default()),
            BrokerSettings::default(),
        );
        for _ in 0..50 {
            broker.maintain(&key()).await;
        }
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        let tokens = broker.edge_tokens();
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            tokens[0].scope,
            "https://cognitiveservices.azure.com/.default"
        );
    }

    #[tokio::test]
    async fn a_mint_is_traced_with_identity_scope_and_credential_never_the_token() {
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let settings = aiproxy_telemetry::Settings::from_lookup(|_| None).unwrap();
        let subscriber = aiproxy_telemetry::subscriber(
            &settings,
            tracing_subscriber::EnvFilter::new("off"),
            Some(&provider),
            std::io::sink,
            false,
        );
        // A current-thread runtime: the subscriber stays the default for the whole test.
        let _guard = tracing::subscriber::set_default(subscriber);
        let broker = TokenBroker::new(
            source(3_600_000),
            Arc::new(MemoryTokenCache::default()),
            BrokerSettings::default(),
        );
        broker.maintain(&key()).await;
        let spans = exporter.get_finished_spans().unwrap();
        let mint = spans
            .iter()
            .find(|s| s.name == "aiproxy.token.mint")
            .expect("a mint span");
        let attr = |k: &str| {
            mint.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(
            attr("aiproxy.identity").as_deref(),
            Some("the proxy's identity")
        );
        assert_eq!(
            attr("aiproxy.token.scope").as_deref(),
            Some("https://cognitiveservices.azure.com/.default")
        );
        assert_eq!(
            attr("aiproxy.credential").as_deref(),
            Some("FakeCredential")
        );
        assert!(
            !format!("{spans:?}").contains("token-0"),
            "the token is never exported"
        );
    }

    #[tokio::test]
    async fn replicas_sharing_a_cache_mint_once() {
        let src = source(3_600_000);
        let cache: Arc<dyn TokenCache> = Arc::new(MemoryTokenCache::default());
        let a = TokenBroker::new(src.clone(), cache.clone(), BrokerSettings::default());
        let b = TokenBroker::new(src.clone(), cache, BrokerSettings::default());
        a.maintain(&key()).await;
        b.maintain(&key()).await;
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            a.edge_tokens()[0].access_token,
            b.edge_tokens()[0].access_token
        );
    }

    #[tokio::test]
    async fn a_held_lock_means_waiting_not_minting() {
        let src = source(3_600_000);
        let cache: Arc<dyn TokenCache> = Arc::new(MemoryTokenCache::default());
        let lock = cache
            .try_lock(&key(), Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let broker = TokenBroker::new(src.clone(), cache.clone(), BrokerSettings::default());
        broker.maintain(&key()).await;
        assert_eq!(
            src.calls.load(Ordering::SeqCst),
            0,
            "another replica holds the lock"
        );
        cache.unlock(&key(), &lock).await.unwrap();
        broker.maintain(&key()).await;
        assert_eq!(src.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_back_off_and_keep_the_current_token() {
        let src = source(2_000);
        let broker = TokenBroker::new(
            src.clone(),
            Arc::new(MemoryTokenCache::default()),
            BrokerSettings::default(),
        );
        broker.maintain(&key()).await;
        let first = broker.edge_tokens()[0].access_token.clone();
        src.failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1_100)).await; // past half-life
        for _ in 0..20 {
            broker.maintain(&key()).await;
        }
        assert_eq!(
            src.calls.load(Ordering::SeqCst),
            2,
            "one failed attempt, then backoff"
        );
        let status = broker.status(&key()).unwrap();
        assert_eq!(
            status.last_error.as_deref(),
            Some("identity endpoint answered 500")
        );
        assert!(
            status.next_attempt_ms.unwrap() >= now_ms() + 29_000,
            "backs off at least 30 s"
        );
        assert_eq!(
            broker.edge_tokens()[0].access_token,
            first,
            "the old token stays in use"
        );
    }

    #[tokio::test]
    async fn short_tokens_are_refreshed_before_expiry() {
        let src = source(1_000);
        let broker = TokenBroker::new(
            src.clone(),
            Arc::new(MemoryTokenCache::default()),
            BrokerSettings::default(),
        );
        broker.maintain(&key()).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        broker.maintain(&key()).await;
        assert_eq!(src.calls.load(Ordering::SeqCst), 2);
        assert_eq!(broker.edge_tokens()[0].access_token, "token-1");
    }

    /// Never answers for the Cognitive Services scope (a credential tool stuck on a prompt).
    struct HangingForOneScope;

    #[async_trait]
    impl TokenSource for HangingForOneScope {
        async fn mint(&self, key: &TokenKey) -> Result<(AccessToken, String), String> {
            if key.scope == Scope::CognitiveServices {
                std::future::pending::<()>().await;
            }
            let token = AccessToken {
                token: Secret::new(format!("token-for-{}", key.scope.as_str())),
                expires_on_ms: now_ms() + 3_600_000,
            };
            Ok((token, "FakeCredential".into()))
        }
    }

    fn managed_identity_resource(id: &str, model_type: ModelType) -> Resource {
        Resource {
            id: id.into(),
            friendly_name: id.into(),
            deployment_name: id.into(),
            model_type,
            endpoint_url: "https://x.services.ai.azure.com/api/projects/p".into(),
            region: String::new(),
            use_managed_identity: true,
            identity_client_id: None,
            active: true,
            use_max_completion_tokens: false,
            encrypted_key: None,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_hung_credential_for_one_scope_does_not_hold_up_the_others() {
        let dir =
            std::env::temp_dir().join(format!("aiproxy-broker-{}", uuid::Uuid::new_v4().simple()));
        let store =
            crate::catalog::store::open(&format!("sqlite://{}", dir.join("c.db").display()), 1)
                .await
                .unwrap();
        // The hung scope sorts first, so a one-by-one refresh would never reach the other.
        for (id, model_type) in [
            ("model", ModelType::FoundryModel),
            ("agent", ModelType::FoundryAgent),
        ] {
            store
                .create_resource(&managed_identity_resource(id, model_type))
                .await
                .unwrap();
        }
        let broker = TokenBroker::new(
            Arc::new(HangingForOneScope),
            Arc::new(MemoryTokenCache::default()),
            BrokerSettings {
                tick: Duration::from_millis(20),
                ..BrokerSettings::default()
            },
        );
        let (_catalog_tx, catalog_rx) = watch::channel(1);
        let task = broker.clone().spawn(store, catalog_rx);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while broker.edge_tokens().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Foundry agent token never came: the hung credential held it up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            broker.edge_tokens()[0].scope,
            "https://ai.azure.com/.default"
        );
        task.abort();
        let _ = std::fs::remove_dir_all(dir);
    }
}
