//! The Agent Service's Azure AI Search tool (`azure_ai_search`, in an agent's or a thread's
//! `tool_resources`, an agent definition's or a Responses call's `tools[]`) makes the service
//! query a search index through one of the project's connections, with that connection's
//! credential: any index of the connection's search service, whoever asks. The project and its
//! connections are the organiser's; the indexes an event's attendees may read are its
//! `azure-ai-search` resources, the same ones its search route and its chat `data_sources`
//! reach. So each index such a tool names must be one of them: its connection, read from the
//! project (`GET {project}/connections/{name}`, remembered for [`TARGET_TTL`]), must target that
//! resource's search service (scheme, host, port), and its `index_name` must be that resource's
//! index. An index asset (`index_asset_id`, which the edge cannot read), an index without a
//! connection or a name, or a connection of another project, is refused.
//!
//! Member names are read in any case, wherever they stand, and duplicate members all count, as
//! for the other body checks.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::de::DeserializeSeed;

use crate::body::{read_to_bytes, with_idle_timeout};
use crate::proxy::canonical::is_id;
use crate::proxy::data_sources::is_event_index;
use crate::proxy::errors::ProxyError;
use crate::proxy::field_names::{self, Prefilter};
use crate::proxy::json_tree::{Node, NodeSeed};
use crate::proxy::{AZURE_AI_SEARCH, available};
use crate::snapshot::{CatalogSnapshot, UpstreamResource};
use crate::state::EdgeState;

/// Every index use stands below an `azure_ai_search` member or names an `index_connection_id`
/// or an `index_asset_id`: a body holds one of these, in some case, or none.
static PREFILTER: LazyLock<Prefilter> =
    LazyLock::new(|| Prefilter::new(&["ai_search", "connection_id", "index_asset"]));

/// Longer names are none of those read here, whatever their case.
const LONGEST_NAME: usize = 32;

/// How long a connection's target is trusted before the project is asked again.
pub const TARGET_TTL: Duration = Duration::from_secs(300);
/// At most this many connections are remembered per edge (all forgotten when full).
const MAX_TARGETS: usize = 1024;
/// The project API version the connection is read with (the Foundry projects API's GA one).
const CONNECTIONS_API_VERSION: &str = "v1";
/// A connection's answer is small; a read that takes longer than this fails the call.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One index an Azure AI Search tool names (an `indexes[]` entry, or an object naming an
/// `index_connection_id` anywhere): every connection and `index_name` member it has (`None`:
/// not a string).
#[derive(Debug, Default, PartialEq)]
pub struct IndexUse {
    connections: Vec<Option<String>>,
    names: Vec<Option<String>>,
    asset: bool,
}

/// Every index that `body`'s Azure AI Search tools name. A body that cannot name one costs a
/// prefilter.
pub fn collect(body: &[u8]) -> Result<Vec<IndexUse>, ProxyError> {
    if !PREFILTER.may_hold(body) {
        return Ok(Vec::new());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let tree = NodeSeed
        .deserialize(&mut deserializer)
        .map_err(|_| ProxyError::bad_request("Invalid JSON in request body"))?;
    let mut found = Vec::new();
    walk(&tree, false, false, &mut found);
    Ok(found)
}

/// A body for a call that no agent project serves (a model resource's Responses or chat):
/// an Azure AI Search tool there has no project connection to be checked against.
pub fn refuse_any(
    body: &[u8],
    snapshot: &CatalogSnapshot,
    event_id: &str,
) -> Result<(), ProxyError> {
    match collect(body)?.is_empty() {
        true => Ok(()),
        false => Err(refusal(
            Refusal::NoProject,
            available(snapshot, event_id, AZURE_AI_SEARCH),
        )),
    }
}

fn key(name: &str) -> Option<String> {
    field_names::folded(name, LONGEST_NAME)
}

/// `in_search`: below an `azure_ai_search` member; `entry`: an element of its `indexes`.
fn walk(node: &Node, in_search: bool, entry: bool, found: &mut Vec<IndexUse>) {
    match node {
        Node::Seq(items) => {
            for item in items {
                walk(item, in_search, false, found);
            }
        }
        Node::Map(members) => {
            let mut this = IndexUse::default();
            let mut is_use = entry;
            for (name, value) in members {
                let key = key(name);
                let key = key.as_deref().unwrap_or_default();
                // Any object naming a search connection or an index asset is an index use; below
                // `azure_ai_search`, so is any naming a connection or an index.
                match key {
                    "index_connection_id" | "project_connection_id" | "connection_id" => {
                        is_use |= in_search || key == "index_connection_id";
                        this.connections.push(value.str().map(str::to_string));
                    }
                    "index_name" => {
                        is_use |= in_search;
                        this.names.push(value.str().map(str::to_string));
                    }
                    "index_asset_id" => {
                        is_use = true;
                        this.asset = true;
                    }
                    _ => {}
                }
                let below_search = in_search || key == "azure_ai_search";
                match value {
                    Node::Seq(items) if below_search && key == "indexes" => {
                        for item in items {
                            walk(item, true, true, found);
                        }
                    }
                    _ => walk(value, below_search, false, found),
                }
            }
            if is_use {
                found.push(this);
            }
        }
        // An `indexes[]` entry that is no object names no connection: refused as incomplete.
        Node::Str(_) | Node::Other if entry => found.push(IndexUse::default()),
        Node::Str(_) | Node::Other => {}
    }
}

/// Refuses `uses` unless each is one of `event_id`'s search indexes, through a connection of
/// `project` (the agent project that serves the call) to that index's search service.
pub async fn check(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    event_id: &str,
    project: &UpstreamResource,
    uses: &[IndexUse],
) -> Result<(), ProxyError> {
    if uses.is_empty() {
        return Ok(());
    }
    let indexes = || available(snapshot, event_id, AZURE_AI_SEARCH);
    if project.model_type != super::FOUNDRY_AGENT {
        return Err(refusal(Refusal::NoProject, indexes()));
    }
    // Everything the body alone settles first: nothing is read from the project for a body
    // refused anyway.
    let mut named = Vec::with_capacity(uses.len());
    for index in uses {
        if index.asset {
            return Err(refusal(Refusal::Asset, indexes()));
        }
        let (Some(connections), Some(names)) = (
            strings(&index.connections).filter(|c| !c.is_empty()),
            strings(&index.names).filter(|n| !n.is_empty()),
        ) else {
            return Err(refusal(Refusal::Incomplete, indexes()));
        };
        let connections = connections
            .into_iter()
            .map(|id| connection_name(id, project))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| refusal(Refusal::OtherProject, indexes()))?;
        named.push((connections, names));
    }
    for (connections, names) in named {
        for name in connections {
            let target = state
                .connection_targets
                .target(state, snapshot, project, name)
                .await?
                .ok_or_else(|| refusal(Refusal::NoConnection, indexes()))?;
            if !names
                .iter()
                .all(|index| is_event_index(snapshot, event_id, &target, index))
            {
                return Err(refusal(Refusal::Index, indexes()));
            }
        }
    }
    Ok(())
}

/// All of `values`, if every one is a string.
fn strings(values: &[Option<String>]) -> Option<Vec<&str>> {
    values.iter().map(Option::as_deref).collect()
}

/// Why an Azure AI Search tool is refused.
enum Refusal {
    Asset,
    Incomplete,
    OtherProject,
    NoConnection,
    Index,
    NoProject,
}

fn refusal(why: Refusal, available: String) -> ProxyError {
    let why = match why {
        Refusal::Asset => {
            "an index asset (index_asset_id) cannot be checked: name the connection and the index_name instead"
        }
        Refusal::Incomplete => "an index named no connection or no index_name",
        Refusal::OtherProject => {
            "a connection id must be the name of one of this project's connections, or its full resource id"
        }
        Refusal::NoConnection => "this project has no connection of the name given",
        Refusal::Index => "the index named is not one of them on that connection's search service",
        Refusal::NoProject => "only an agent project's calls can use it",
    };
    ProxyError::new(
        StatusCode::FORBIDDEN,
        format!(
            "tools: an Azure AI Search tool may query only this event's search indexes, each named \
             by a project connection to its search service (index_connection_id or \
             project_connection_id) and its index_name; {why}. Available search indexes are: \
             {available}"
        ),
    )
}

/// The name of the connection `id` names in `project`: a bare name, or a connection's resource id
/// (`/subscriptions/…/providers/Microsoft.CognitiveServices/accounts/{account}/projects/{project}/connections/{name}`)
/// of this very project (its account is the endpoint's first host label, its project the
/// endpoint's `/api/projects/{project}`).
fn connection_name<'a>(id: &'a str, project: &UpstreamResource) -> Option<&'a str> {
    if !id.contains('/') {
        return is_id(id).then_some(id);
    }
    let parts: Vec<&str> = id.strip_prefix('/')?.split('/').collect();
    let [
        subscriptions,
        _,
        group_word,
        _,
        providers,
        provider,
        accounts,
        account,
        projects,
        project_name,
        connections,
        name,
    ] = parts[..]
    else {
        return None;
    };
    let words = [
        (subscriptions, "subscriptions"),
        (group_word, "resourcegroups"),
        (providers, "providers"),
        (provider, "microsoft.cognitiveservices"),
        (accounts, "accounts"),
        (projects, "projects"),
        (connections, "connections"),
    ];
    let endpoint: http::Uri = project.endpoint_url.parse().ok()?;
    let own_account = endpoint.host()?.split('.').next()?;
    let own_project = endpoint.path().trim_end_matches('/').rsplit('/').next()?;
    (words
        .iter()
        .all(|(word, expected)| word.eq_ignore_ascii_case(expected))
        && account.eq_ignore_ascii_case(own_account)
        && project_name.eq_ignore_ascii_case(own_project)
        && is_id(name))
    .then_some(name)
}

/// Where each project connection points, as its project last said (see [`TARGET_TTL`]).
#[derive(Default)]
pub struct ConnectionTargets {
    /// Each connection's target and when it was read.
    known: Mutex<HashMap<ConnectionKey, (Arc<str>, Instant)>>,
}

/// A project's connection: (resource id, connection name).
type ConnectionKey = (String, String);

#[derive(serde::Deserialize)]
struct Connection {
    target: String,
}

impl ConnectionTargets {
    /// The target of `project`'s connection `name`; `None` when the project has none so named.
    async fn target(
        &self,
        state: &EdgeState,
        snapshot: &CatalogSnapshot,
        project: &UpstreamResource,
        name: &str,
    ) -> Result<Option<Arc<str>>, ProxyError> {
        let key = (project.id.clone(), name.to_string());
        if let Some(target) = self.remembered(&key, Instant::now()) {
            return Ok(Some(target));
        }
        let failed = |what: String| {
            tracing::warn!(resource = %project.id, connection = name, "{what}");
            ProxyError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Could not read the project's connection '{name}' of '{}' to check an Azure AI \
                     Search tool: {what}",
                    project.friendly_name
                ),
            )
        };
        let uri = format!(
            "{}/connections/{name}?api-version={CONNECTIONS_API_VERSION}",
            super::base_of(project)
        )
        .parse::<http::Uri>()
        .map_err(|_| failed("not a valid address".into()))?;
        let read = async {
            let response =
                crate::proxy::own_call(state, snapshot, project, Method::GET, uri, None).await?;
            let status = response.status();
            let body =
                with_idle_timeout(response.into_body(), READ_TIMEOUT, "a project connection");
            let bytes = read_to_bytes(body, 64 * 1024)
                .await
                .map_err(|e| failed(format!("its answer could not be read ({e})")))?;
            Ok::<_, ProxyError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| failed(format!("no answer within {READ_TIMEOUT:?}")))??;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(failed(format!("the project answered {status}")));
        }
        let connection = serde_json::from_slice::<Connection>(&bytes)
            .map_err(|_| failed("the project's answer names no target".into()))?;
        let target: Arc<str> = connection.target.into();
        self.remember(key, target.clone(), Instant::now());
        Ok(Some(target))
    }

    /// The target read for `key` less than [`TARGET_TTL`] before `now`.
    fn remembered(&self, key: &ConnectionKey, now: Instant) -> Option<Arc<str>> {
        let known = self.known.lock().unwrap();
        let (target, read) = known.get(key)?;
        (now.saturating_duration_since(*read) < TARGET_TTL).then(|| target.clone())
    }

    fn remember(&self, key: ConnectionKey, target: Arc<str>, now: Instant) {
        let mut known = self.known.lock().unwrap();
        if known.len() >= MAX_TARGETS && !known.contains_key(&key) {
            known.clear();
        }
        known.insert(key, (target, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn uses(body: serde_json::Value) -> Vec<IndexUse> {
        collect(body.to_string().as_bytes()).unwrap()
    }

    fn index(connection: &str, name: &str) -> IndexUse {
        IndexUse {
            connections: vec![Some(connection.into())],
            names: vec![Some(name.into())],
            asset: false,
        }
    }

    #[test]
    fn every_shape_of_the_tool_names_its_indexes() {
        // Classic agents: tool_resources.
        let classic = json!({"tools": [{"type": "azure_ai_search"}],
            "tool_resources": {"azure_ai_search": {"indexes": [
                {"index_connection_id": "search", "index_name": "products", "query_type": "simple"}]}}});
        assert_eq!(uses(classic), vec![index("search", "products")]);
        // New agents and Responses: tools[].azure_ai_search.
        let new = json!({"definition": {"kind": "prompt", "tools": [{"type": "azure_ai_search",
            "azure_ai_search": {"indexes": [{"project_connection_id": "search", "index_name": "a"},
                                            {"project_connection_id": "search", "index_name": "b"}]}}]}});
        assert_eq!(uses(new), vec![index("search", "a"), index("search", "b")]);
        // Any case, duplicates all kept, entries with nothing, assets, non-strings.
        let odd = json!({"Tool_Resources": {"AZURE_AI_SEARCH": {"Indexes": [
            {"Index_Connection_Id": "one", "index_connection_id": "two", "INDEX_NAME": "x"},
            {}, "loose", {"index_asset_id": "asset-1"}, {"project_connection_id": 7, "index_name": "y"}]}}});
        assert_eq!(
            uses(odd),
            vec![
                IndexUse {
                    connections: vec![Some("one".into()), Some("two".into())],
                    names: vec![Some("x".into())],
                    asset: false
                },
                IndexUse::default(),
                IndexUse::default(),
                IndexUse {
                    asset: true,
                    ..IndexUse::default()
                },
                IndexUse {
                    connections: vec![None],
                    names: vec![Some("y".into())],
                    asset: false
                },
            ]
        );
        // A letter whose upper case is ASCII (`ſ`) spells the tool for a case-insensitive reader.
        assert_eq!(
            uses(json!({"tools": [{"azure_ai_\u{17f}earch": {"indexes": [
                {"project_connection_id": "c", "index_name": "i"}]}}]})),
            vec![index("c", "i")]
        );
        // `index_connection_id` names a search connection wherever it stands.
        assert_eq!(
            uses(json!({"x": [{"index_connection_id": "c", "index_name": "i"}]})),
            vec![index("c", "i")]
        );
    }

    #[test]
    fn other_tools_and_connections_name_no_index() {
        for body in [
            json!({"tools": [{"type": "file_search"}, {"type": "bing_grounding",
                "bing_grounding": {"search_configurations": [{"project_connection_id": "bing"}]}}]}),
            json!({"messages": [{"role": "user", "content": "index_name azure_ai_search"}]}),
            json!({"data_sources": [{"type": "azure_search", "parameters": {"index_name": "x"}}]}),
            json!([1, 2]),
        ] {
            assert_eq!(uses(body.clone()), Vec::new(), "{body}");
        }
        let snapshot = CatalogSnapshot::default();
        assert!(refuse_any(br#"{"model":"gpt-4o","input":"hi"}"#, &snapshot, "e").is_ok());
        let tool = json!({"tools": [{"type": "azure_ai_search", "azure_ai_search":
            {"indexes": [{"project_connection_id": "search", "index_name": "a"}]}}]});
        let refused = refuse_any(tool.to_string().as_bytes(), &snapshot, "e").unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused
                .message
                .ends_with("Available search indexes are: (none)")
        );
    }

    #[test]
    fn a_target_is_remembered_for_its_ttl_and_the_memory_is_bounded() {
        let targets = ConnectionTargets::default();
        let key = |n: usize| ("r1".to_string(), format!("c{n}"));
        let t0 = Instant::now();
        targets.remember(key(0), "https://a.search.windows.net".into(), t0);
        let seen = |at| targets.remembered(&key(0), at).map(|t| t.to_string());
        assert_eq!(seen(t0).as_deref(), Some("https://a.search.windows.net"));
        let almost = t0 + TARGET_TTL - Duration::from_millis(1);
        assert!(seen(almost).is_some());
        assert_eq!(seen(t0 + TARGET_TTL), None, "read again after its TTL");
        for n in 1..=MAX_TARGETS {
            targets.remember(key(n), "https://b.search.windows.net".into(), t0);
            assert!(targets.known.lock().unwrap().len() <= MAX_TARGETS);
        }
        assert!(
            targets.remembered(&key(MAX_TARGETS), t0).is_some(),
            "the newest is kept"
        );
    }

    fn project() -> UpstreamResource {
        UpstreamResource {
            id: "r1".into(),
            friendly_name: "Agents".into(),
            deployment_name: String::new(),
            model_type: "foundry-agent".into(),
            endpoint_url: "https://ai-hack.services.ai.azure.com/api/projects/hack-01".into(),
            origin: "https://ai-hack.services.ai.azure.com".into(),
            region: String::new(),
            use_managed_identity: true,
            identity_client_id: String::new(),
            token_scope: String::new(),
            active: true,
            use_max_completion_tokens: false,
            api_key: None,
        }
    }

    #[test]
    fn a_connection_is_named_bare_or_by_the_resource_id_of_this_project() {
        let project = project();
        let id = |account: &str, name: &str| {
            format!(
                "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/{account}/projects/{name}/connections/search-1"
            )
        };
        assert_eq!(connection_name("search-1", &project), Some("search-1"));
        assert_eq!(
            connection_name(&id("ai-hack", "hack-01"), &project),
            Some("search-1")
        );
        assert_eq!(
            connection_name(&id("AI-HACK", "Hack-01"), &project),
            Some("search-1")
        );
        for other in [
            id("other", "hack-01"),
            id("ai-hack", "hack-02"),
            id("ai-hack", "hack-01").replace(
                "Microsoft.CognitiveServices",
                "Microsoft.MachineLearningServices",
            ),
            format!("{}/x", id("ai-hack", "hack-01")),
            id("ai-hack", "hack-01").replace("search-1", "a%2Fb"),
            "../search-1".into(),
            // A bare name goes into the upstream path: nothing that could leave or extend it.
            "..".into(),
            "a%2Fb".into(),
            "search-1?api-version=x".into(),
            "search-1#x".into(),
            "search.1".into(),
            "search 1".into(),
            String::new(),
        ] {
            assert_eq!(connection_name(&other, &project), None, "{other}");
        }
    }
}
