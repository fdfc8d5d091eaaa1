//! Azure OpenAI "On Your Data": a chat call's `data_sources` make the Azure OpenAI resource
//! itself query a search index (or Cosmos DB, Elasticsearch, an ML index…) and answer from it.
//! A data source authenticated with a credential of the caller's own (`api_key`,
//! `access_token`…) reaches nothing the caller could not reach without the proxy. One that
//! authenticates as the resource (`system_assigned_managed_identity`,
//! `user_assigned_managed_identity`, or no credential at all) would query, with the resource's
//! identity, whatever endpoint and index the caller names: such a data source must be one of the
//! event's own `azure-ai-search` indexes, the same ones its search route reaches. An embedding
//! deployment a data source names (`embedding_dependency.deployment_name`) is one of the
//! serving resource's own: it must be one the event grants on that resource.
//!
//! Member names and discriminators are read as an upstream that ignores case could read them
//! (`dataSources`, `DATA_SOURCES`, `indexName`, `SystemAssignedManagedIdentity`), and duplicate
//! members all count: whichever one upstream keeps must pass.

use std::sync::{Arc, LazyLock};

use http::StatusCode;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::proxy::errors::ProxyError;
use crate::proxy::field_names::{self, Prefilter};
use crate::proxy::json_tree::{Node, NodeSeed};
use crate::proxy::{AZURE_AI_SEARCH, FOUNDRY_MODEL, available};
use crate::snapshot::{CatalogSnapshot, UpstreamResource};

/// Every spelling of the member (`data_sources`, `dataSources`) holds this, in some case.
static PREFILTER: LazyLock<Prefilter> = LazyLock::new(|| Prefilter::new(&["source"]));

/// Longer names are none of those this module reads, whatever their case.
const LONGEST_NAME: usize = 32;

/// `authentication.type` values that carry a credential of the caller's own, folded (see
/// [`key`]): the current API's and the 2023 previews' (`APIKey`, `AccessToken`…). Any other
/// value, or none, is the resource's identity.
const CALLERS_CREDENTIALS: [&str; 12] = [
    "api_key",
    "apikey",
    "connection_string",
    "connectionstring",
    "key_and_key_id",
    "keyandkeyid",
    "encoded_api_key",
    "encodedapikey",
    "access_token",
    "accesstoken",
    "username_and_password",
    "usernameandpassword",
];

/// The member names read here, folded, in each API's spelling (`data_sources`, `dataSources`).
const DATA_SOURCES: [&str; 2] = ["data_sources", "datasources"];
const INDEX_NAME: [&str; 2] = ["index_name", "indexname"];
const DEPLOYMENT_NAME: [&str; 2] = ["deployment_name", "deploymentname"];

/// Refuses a chat `body` whose data sources would reach, as the Azure resource, anything but
/// one of `event_id`'s search indexes, or would embed with a deployment the event does not grant
/// on every resource of `serving()` (the pool that may serve the call, looked up only then;
/// `None` when the event has no such pool, which the call's routing refuses). A body that cannot
/// name data sources costs a prefilter.
pub fn check<'a>(
    body: &[u8],
    snapshot: &'a CatalogSnapshot,
    event_id: &str,
    serving: impl Fn() -> Option<&'a [Arc<UpstreamResource>]>,
) -> Result<(), ProxyError> {
    let index = |endpoint: &str, index: &str| is_event_index(snapshot, event_id, endpoint, index);
    let deployment = |name: &str| {
        let granted = snapshot.pool(event_id, FOUNDRY_MODEL, name);
        serving().is_none_or(|serving| {
            serving.iter().all(|m| {
                granted.is_some_and(|g| g.iter().any(|e| same_origin(&e.origin, &m.origin)))
            })
        })
    };
    let (what, available) = match judge(body, index, deployment)? {
        None => return Ok(()),
        Some(Refusal::Index) => (
            "a data source that authenticates as the Azure resource (its managed identity, or \
             no credential of your own) must be one of this event's search indexes, named by \
             its endpoint and index_name. Available search indexes are",
            available(snapshot, event_id, AZURE_AI_SEARCH),
        ),
        Some(Refusal::Deployment) => (
            "an embedding deployment_name must be one of this event's deployments on the \
             resource that serves the call. Available deployments are",
            available(snapshot, event_id, FOUNDRY_MODEL),
        ),
    };
    Err(ProxyError::new(
        StatusCode::FORBIDDEN,
        format!("data_sources: {what}: {available}"),
    ))
}

/// Why data sources are refused.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// One reaches, as the resource, a search index `index` does not grant (endpoint, name).
    Index,
    /// One names an embedding deployment `deployment` does not grant.
    Deployment,
}

/// The data sources of `body` judged against what is granted: `None` when they may pass.
fn judge(
    body: &[u8],
    index: impl Fn(&str, &str) -> bool,
    deployment: impl Fn(&str) -> bool,
) -> Result<Option<Refusal>, ProxyError> {
    if !PREFILTER.may_hold(body) {
        return Ok(None);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let sources = TopLevel
        .deserialize(&mut deserializer)
        .map_err(|_| ProxyError::bad_request("Invalid JSON in request body"))?;
    if !sources.iter().all(|node| node.as_resource_reaches(&index)) {
        return Ok(Some(Refusal::Index));
    }
    let mut named = Vec::new();
    for node in &sources {
        node.deployments(&mut named);
    }
    if !named.iter().all(|d| d.is_some_and(&deployment)) {
        return Ok(Some(Refusal::Deployment));
    }
    Ok(None)
}

/// A member name or discriminator folded: ASCII lower case through Unicode case mappings (so
/// `dataSources` is `datasources`); `None` when too long to be any name this module reads.
/// Underscores are kept: `authentica_tion` is no name upstream reads, so it must not count as
/// the `authentication` beside an endpoint.
fn key(name: &str) -> Option<String> {
    field_names::folded(name, LONGEST_NAME)
}

/// Whether `name`, folded, is one of `spellings`.
fn is(name: &str, spellings: &[&str]) -> bool {
    key(name).is_some_and(|k| spellings.contains(&k.as_str()))
}

impl Node {
    /// Whether everything this value makes the resource reach with its own identity is
    /// `granted` (endpoint, index name). Checked in every object, at any depth: an object
    /// with an `authentication` that is not the caller's credential, or with an `endpoint` and
    /// no `authentication`, must name granted indexes only, by its `endpoint`s and `index_name`s.
    fn as_resource_reaches(&self, granted: &impl Fn(&str, &str) -> bool) -> bool {
        match self {
            Node::Seq(items) => items.iter().all(|item| item.as_resource_reaches(granted)),
            Node::Map(members) => {
                let (mut authentications, mut as_resource) = (0, false);
                let (mut endpoints, mut indexes) = (Vec::new(), Vec::new());
                for (name, value) in members {
                    match key(name).as_deref() {
                        Some("authentication") => {
                            authentications += 1;
                            as_resource |= !value.is_callers_credential();
                        }
                        Some("endpoint") => endpoints.push(value.str()),
                        Some(k) if INDEX_NAME.contains(&k) => indexes.push(value.str()),
                        _ => {}
                    }
                    if !value.as_resource_reaches(granted) {
                        return false;
                    }
                }
                if !(as_resource || (authentications == 0 && !endpoints.is_empty())) {
                    return true;
                }
                !endpoints.is_empty()
                    && !indexes.is_empty()
                    && endpoints.iter().all(|endpoint| {
                        indexes.iter().all(|index| match (endpoint, index) {
                            (Some(endpoint), Some(index)) => granted(endpoint, index),
                            _ => false,
                        })
                    })
            }
            Node::Str(_) | Node::Other => true,
        }
    }

    /// Every `deployment_name` inside (an embedding dependency's), wherever it stands; `None` for
    /// one that is not a string.
    fn deployments<'a>(&'a self, named: &mut Vec<Option<&'a str>>) {
        match self {
            Node::Seq(items) => items.iter().for_each(|item| item.deployments(named)),
            Node::Map(members) => {
                for (name, value) in members {
                    if is(name, &DEPLOYMENT_NAME) {
                        named.push(value.str());
                    }
                    value.deployments(named);
                }
            }
            Node::Str(_) | Node::Other => {}
        }
    }

    /// An `authentication` object whose every `type` is a credential the caller supplies.
    fn is_callers_credential(&self) -> bool {
        let Node::Map(members) = self else {
            return false;
        };
        let mut types = members
            .iter()
            .filter(|(name, _)| is(name, &["type"]))
            .peekable();
        types.peek().is_some()
            && types.all(|(_, value)| value.str().is_some_and(|t| is(t, &CALLERS_CREDENTIALS)))
    }
}

/// Whether `index` at `endpoint` (same scheme, host and port) is one of `event_id`'s
/// `azure-ai-search` resources: the indexes its search route reaches, and all that a request may
/// make an Azure resource read with an identity or connection of the organiser's.
pub(crate) fn is_event_index(
    snapshot: &CatalogSnapshot,
    event_id: &str,
    endpoint: &str,
    index: &str,
) -> bool {
    snapshot
        .pool(event_id, AZURE_AI_SEARCH, index)
        .is_some_and(|members| {
            members
                .iter()
                .any(|m| same_origin(&m.endpoint_url, endpoint))
        })
}

/// Same scheme, host and port (the default one when none is written); a URL that carries user
/// information or does not parse is no one's origin.
fn same_origin(granted: &str, named: &str) -> bool {
    fn origin(url: &str) -> Option<(String, String, u16)> {
        let uri: http::Uri = url.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let port = match (authority.port_u16(), scheme.as_str()) {
            (Some(port), _) => port,
            (None, "https") => 443,
            (None, "http") => 80,
            _ => return None,
        };
        let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
        Some((scheme, host, port))
    }
    matches!((origin(granted), origin(named)), (Some(a), Some(b)) if a == b)
}

/// The top-level members named like `data_sources`, each kept whole; everything else skipped.
struct TopLevel;

impl<'de> DeserializeSeed<'de> for TopLevel {
    type Value = Vec<Node>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Node>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Vec<Node>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Vec<Node>, A::Error> {
        let mut sources = Vec::new();
        while let Some(name) = members.next_key::<std::borrow::Cow<'de, str>>()? {
            if is(&name, &DATA_SOURCES) {
                sources.push(members.next_value_seed(NodeSeed)?);
            } else {
                members.next_value::<IgnoredAny>()?;
            }
        }
        Ok(sources)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Vec<Node>, A::Error> {
        while items.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Vec<Node>, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Vec<Node>, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Vec<Node>, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Vec<Node>, E> {
        Ok(Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Vec<Node>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Vec<Node>, E> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const GRANTED: &str = "https://search-a.search.windows.net";

    /// What `body` meets with index `products` on [`GRANTED`] the event's only one, and `ada`
    /// its only embedding deployment.
    fn judged(body: &str) -> Option<Refusal> {
        judge(
            body.as_bytes(),
            |endpoint, index| same_origin(GRANTED, endpoint) && index == "products",
            |deployment| deployment == "ada",
        )
        .unwrap()
    }

    fn passes(body: &str) -> bool {
        judged(body).is_none()
    }

    fn with(sources: Value) -> String {
        json!({"messages": [{"role": "user", "content": "hi"}], "data_sources": sources})
            .to_string()
    }

    fn search(endpoint: &str, index: &str, authentication: Value) -> Value {
        json!([{"type": "azure_search", "parameters": {"endpoint": endpoint,
            "index_name": index, "authentication": authentication}}])
    }

    fn identity() -> Value {
        json!({"type": "system_assigned_managed_identity"})
    }

    #[test]
    fn the_callers_own_credentials_reach_anything() {
        assert!(passes(
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#
        ));
        assert!(passes("[1, 2]"));
        let elsewhere = "https://other.search.windows.net";
        for authentication in [
            json!({"type": "api_key", "key": "k"}),
            json!({"type": "access_token", "access_token": "t"}),
            json!({"type": "API_KEY", "key": "k"}),
            json!({"type": "APIKey", "key": "k"}),
        ] {
            assert!(passes(&with(search(elsewhere, "secret", authentication))));
        }
        assert!(passes(&with(
            json!([{"type": "azure_cosmos_db", "parameters": {
            "authentication": {"type": "connection_string", "connection_string": "c"},
            "database_name": "d", "container_name": "c", "index_name": "i",
            "embedding_dependency": {"type": "endpoint", "endpoint": "https://e.openai.azure.com",
                "authentication": {"type": "api_key", "key": "k"}}}}])
        )));
    }

    #[test]
    fn the_resources_identity_reaches_only_the_events_indexes() {
        let allowed = [
            with(search(GRANTED, "products", identity())),
            with(search(
                "HTTPS://Search-A.search.windows.net.:443/",
                "products",
                json!({"type": "user_assigned_managed_identity",
                       "managed_identity_resource_id": "/subscriptions/s/x"}),
            )),
            // The 2023 previews' spelling, on extensions/chat/completions.
            json!({"dataSources": [{"type": "AzureCognitiveSearch", "parameters": {
                "endpoint": GRANTED, "indexName": "products",
                "authentication": {"type": "SystemAssignedManagedIdentity"}}}]})
            .to_string(),
            with(
                json!([{"type": "azure_search", "parameters": {"endpoint": GRANTED,
                "index_name": "products", "authentication": identity(),
                "embedding_dependency": {"type": "deployment_name",
                    "deployment_name": "ada"}}}]),
            ),
        ];
        for body in allowed {
            assert!(passes(&body), "{body}");
        }
        let refused = [
            with(search(GRANTED, "secret", identity())),
            with(search(
                "https://other.search.windows.net",
                "products",
                identity(),
            )),
            with(search(
                "http://search-a.search.windows.net",
                "products",
                identity(),
            )),
            with(search(
                "https://x@search-a.search.windows.net",
                "products",
                identity(),
            )),
            with(search(
                GRANTED,
                "secret",
                json!({"type": "user_assigned_managed_identity",
                       "managed_identity_resource_id": "/subscriptions/s/x"}),
            )),
            // No credential: the resource chooses how to authenticate.
            with(json!([{"type": "azure_search", "parameters": {
                "endpoint": "https://other.search.windows.net", "index_name": "products"}}])),
            with(search(GRANTED, "secret", json!({}))),
            with(search(GRANTED, "secret", json!("api_key"))),
            with(search(GRANTED, "secret", json!({"type": 1}))),
            with(search(GRANTED, "secret", json!({"type": "something_new"}))),
            // Identity with no endpoint (an ML index in a project).
            with(json!([{"type": "azure_ml_index", "parameters": {
                "project_resource_id": "/subscriptions/s/p", "name": "n", "version": "1",
                "authentication": identity()}}])),
            with(
                json!([{"type": "azure_search", "parameters": {"endpoint": GRANTED,
                "authentication": identity()}}]),
            ),
            with(
                json!([{"type": "azure_search", "parameters": {"endpoint": 7,
                "index_name": "products", "authentication": identity()}}]),
            ),
            // Nested, in any shape.
            with(
                json!([[{"parameters": {"endpoint": GRANTED, "index_name": "secret",
                "authentication": identity()}}]]),
            ),
            json!({"DataSources": search(GRANTED, "secret", identity())}).to_string(),
            json!({"DATA_SOURCES": search(GRANTED, "secret", identity())}).to_string(),
            json!({"data_\u{17f}ources": search(GRANTED, "secret", identity())}).to_string(),
            with(search(
                GRANTED,
                "secret",
                json!({"type": "System_Assigned_Managed_Identity"}),
            )),
        ];
        for body in refused {
            assert!(!passes(&body), "{body}");
        }
    }

    #[test]
    fn duplicate_members_all_count_and_escapes_are_read() {
        let source = |params: &str| {
            format!(
                r#"{{"messages": [], "data_sources": [{{"type": "azure_search", "parameters": {{{params}}}}}]}}"#
            )
        };
        for params in [
            // Upstream may keep either of two members of one name.
            r#""endpoint": "https://search-a.search.windows.net", "index_name": "products", "index_name": "secret", "authentication": {"type": "system_assigned_managed_identity"}"#,
            r#""endpoint": "https://search-a.search.windows.net", "endpoint": "https://other.search.windows.net", "index_name": "products", "authentication": {"type": "system_assigned_managed_identity"}"#,
            r#""endpoint": "https://other.search.windows.net", "index_name": "x", "authentication": {"type": "api_key", "key": "k"}, "Authentication": {"type": "system_assigned_managed_identity"}"#,
            r#""endpoint": "https://other.search.windows.net", "index_name": "x", "authentication": {"type": "api_key", "type": "system_assigned_managed_identity"}"#,
            r#""endpoint": "https://other.search.windows.net", "index_name": "x", "authentic\u0061tion": {"type": "system_assigned_managed_identity"}"#,
        ] {
            assert!(!passes(&source(params)), "{params}");
        }
        assert!(!passes(
            r#"{"data_\u0073ources": [{"parameters": {"endpoint": "https://other.search.windows.net", "index_name": "x"}}]}"#
        ));
        // Names and types upstream does not read are no credential: a decoy beside no real
        // `authentication` leaves the resource to choose, so the endpoint must be granted.
        for params in [
            r#""endpoint": "https://other.search.windows.net", "index_name": "x", "authentica_tion": {"type": "api_key", "key": "k"}"#,
            r#""endpoint": "https://other.search.windows.net", "index_name": "x", "authentication": {"type": "api_k_ey", "key": "k"}"#,
        ] {
            assert!(!passes(&source(params)), "{params}");
        }
        assert!(passes(&source(
            r#""endpoint": "https://search-a.search.windows.net", "index_name": "products", "authentication": {"type": "system_assigned_managed_identity"}, "authentication": {"type": "api_key", "key": "k"}"#
        )));
        assert!(judge(b"{\"data_sources\": [", |_, _| true, |_| true).is_err());
    }

    #[test]
    fn an_embedding_deployment_must_be_granted() {
        let embedding = |dependency: Value| {
            with(json!([{"type": "azure_search", "parameters": {
                "endpoint": "https://other.search.windows.net", "index_name": "x",
                "authentication": {"type": "api_key", "key": "k"},
                "embedding_dependency": dependency}}]))
        };
        assert!(passes(&embedding(
            json!({"type": "deployment_name", "deployment_name": "ada"})
        )));
        for dependency in [
            json!({"type": "deployment_name", "deployment_name": "gpt-4-reserved"}),
            json!({"type": "deployment_name", "deployment_name": 7}),
            json!({"type": "DeploymentName", "deploymentName": "gpt-4-reserved"}),
        ] {
            assert_eq!(
                judged(&embedding(dependency.clone())),
                Some(Refusal::Deployment),
                "{dependency}"
            );
        }
        // An embeddings endpoint of the caller's own, with the caller's key: passes.
        assert!(passes(&embedding(json!({"type": "endpoint",
            "endpoint": "https://e.openai.azure.com/openai/deployments/x/embeddings",
            "authentication": {"type": "api_key", "key": "k"}}))));
    }
}
