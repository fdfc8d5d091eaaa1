//! Runs and background responses read to their end by the edge itself. An agent run (or a
//! `background: true` response) reports its tokens only on a read of the finished object; a
//! client that starts one and then reads only the thread's messages (or the conversation's
//! items) would use tokens no cap sees. So when an answer shows a run or response still at work,
//! the edge that served it follows it: it reads the object from the same upstream resource, at
//! growing intervals, until it ends, and charges its tokens (once: by the same once-key as a
//! client's read, so a client that reads the finished run itself is not charged twice, and the
//! edge stops following as soon as such a read was charged).
//!
//! Bounded: at most [`MOST_FOLLOWED`] objects per edge, each for at most [`FOLLOWED_FOR`], one
//! read at a time; an attendee with `AIPROXY_FOLLOW_UPS_PER_ATTENDEE` of them has further
//! creating calls refused ([`FollowUps::refusal`]), so no attendee can crowd out the others' or
//! start runs faster than the edge can count them. A follow-up's record carries `follow_up`
//! (tokens, no request). On shutdown each follow-up reads its object once more at once and
//! records what it finds (see [`FollowUps::stop`]); one still at work then is left unrecorded,
//! with a warning.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiproxy_proto::v1 as pb;
use http::{Method, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

use super::scan::{self, Tokens, Unfinished};
use crate::body::read_to_bytes;
use crate::metrics::{Finished, ServedBy};
use crate::proxy::canonical::is_id;
use crate::proxy::errors::ProxyError;
use crate::quota::Charge;
use crate::state::EdgeState;

/// Objects one edge follows at once; past it, new ones are not followed (and a warning says so).
pub const MOST_FOLLOWED: usize = 10_000;
/// The first read, after the object was first seen at work: a client that polls its run (most
/// do, every second or so) has read and been charged the finished run by then.
const FIRST_LOOK: Duration = Duration::from_secs(5);
/// The intervals double up to this.
const LONGEST_WAIT: Duration = Duration::from_secs(30);
/// Longest one object is followed (an Azure run expires after 10 minutes at work; a background
/// response may take longer).
const FOLLOWED_FOR: Duration = Duration::from_secs(3600);
/// Longest one read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What one follow-up needs: where to read its object, and whom its tokens are charged to.
#[derive(Debug)]
pub struct FollowUp {
    pub resource_id: String,
    pub object: Unfinished,
    /// The client's `api-version`, sent with each read (nothing else of its query is).
    pub api_version: Option<String>,
    pub once_key: String,
    pub charge: Charge,
    pub event_id: String,
    pub user_id: String,
    pub deployment: String,
    pub family: &'static str,
}

impl FollowUp {
    /// The object's path below its resource's base (see `proxy::foundry::base_of`); `None` if
    /// an id could not be a path segment.
    fn path(&self) -> Option<String> {
        let path = match &self.object {
            Unfinished::Run { id, thread_id } if is_id(id) && is_id(thread_id) => {
                format!("/threads/{thread_id}/runs/{id}")
            }
            Unfinished::Response { id } if is_id(id) => format!("/openai/v1/responses/{id}"),
            _ => return None,
        };
        Some(match &self.api_version {
            Some(version) => format!("{path}?api-version={version}"),
            None => path,
        })
    }
}

/// The objects this edge follows.
#[derive(Debug)]
pub struct FollowUps {
    following: Mutex<Following>,
    per_attendee: usize,
    stop: watch::Sender<bool>,
}

/// The once-keys followed, and how many are each attendee's (event id, user id).
#[derive(Debug, Default)]
struct Following {
    keys: HashSet<String>,
    by_attendee: HashMap<(String, String), usize>,
}

impl FollowUps {
    /// `per_attendee`: `AIPROXY_FOLLOW_UPS_PER_ATTENDEE`.
    pub fn new(per_attendee: usize) -> Self {
        Self {
            following: Mutex::default(),
            per_attendee,
            stop: watch::Sender::new(false),
        }
    }

    /// Objects followed now.
    pub fn following(&self) -> usize {
        self.lock().keys.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Following> {
        self.following.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// 429 for a call that may start a run or response, when the attendee has
    /// `per_attendee` of them followed already.
    pub fn refusal(&self, event_id: &str, user_id: &str) -> Option<ProxyError> {
        let following = self.lock();
        if following.by_attendee.is_empty() {
            // Most of the time: no key to build.
            return None;
        }
        let held = following
            .by_attendee
            .get(&(event_id.to_string(), user_id.to_string()))
            .copied()
            .unwrap_or(0);
        (held >= self.per_attendee).then(|| {
            ProxyError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "You have {held} runs or responses still at work: wait for some to end before starting more."
                ),
            )
            .with_retry_after(FIRST_LOOK.as_secs() as i64)
        })
    }

    /// Whether the object of this once-key is followed now (an answer that shows it at work
    /// again need not build its follow-up).
    pub fn follows(&self, once_key: &str) -> bool {
        self.lock().keys.contains(once_key)
    }

    /// Follows `job`'s object until it ends, unless it is followed already (or the edge follows
    /// [`MOST_FOLLOWED`]). The attendee's own bound is kept at admission ([`Self::refusal`]):
    /// runs their concurrent calls started past it are followed all the same. Counted in
    /// `state.drains` while it runs, so shutdown waits for its last read.
    pub fn follow(&self, state: &Arc<EdgeState>, job: FollowUp) {
        let Some(path) = job.path() else {
            tracing::warn!(object = ?job.object, "an unfinished object's id is not one the edge can read it by");
            return;
        };
        // An answer dropped outside the runtime (the process ending) follows nothing.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if *self.stop.borrow() {
            return;
        }
        let attendee = (job.event_id.clone(), job.user_id.clone());
        {
            let mut following = self.lock();
            if following.keys.contains(&job.once_key) {
                return;
            }
            if following.keys.len() >= MOST_FOLLOWED {
                tracing::warn!(
                    most = MOST_FOLLOWED,
                    "too many runs and responses followed: this one's tokens count only if a client reads it finished"
                );
                return;
            }
            following.keys.insert(job.once_key.clone());
            *following.by_attendee.entry(attendee.clone()).or_default() += 1;
        }
        let ticket = state.drains.start();
        let stop = self.stop.subscribe();
        let entry = Entry {
            state: state.clone(),
            once_key: job.once_key.clone(),
            attendee,
        };
        runtime.spawn(async move {
            let _ticket = ticket;
            follow(&entry.state, &job, &path, stop).await;
            drop(entry);
        });
    }

    /// Shutdown: every follow-up reads its object once more now, records it if it ended, and
    /// stops. `drains.finish` then waits for those last reads.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// One object followed: counted in [`FollowUps`] until dropped (its follow-up ended, panicked,
/// or was dropped unrun).
struct Entry {
    state: Arc<EdgeState>,
    once_key: String,
    attendee: (String, String),
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut following = self.state.follow_ups.lock();
        following.keys.remove(&self.once_key);
        if let Some(held) = following.by_attendee.get_mut(&self.attendee) {
            *held -= 1;
            if *held == 0 {
                following.by_attendee.remove(&self.attendee);
            }
        }
    }
}

/// What one read found.
#[derive(Debug, PartialEq)]
enum Read {
    /// Ended: its tokens (none if the upstream reported none).
    Ended(Option<Tokens>),
    AtWork,
    /// Deleted, or its resource left the catalog: nothing more to learn.
    Gone,
    /// No answer this time (a failure, a timeout, no credential): tried again later.
    Failed,
}

async fn follow(
    state: &Arc<EdgeState>,
    job: &FollowUp,
    path: &str,
    mut stop: watch::Receiver<bool>,
) {
    let since = Instant::now();
    let mut wait = FIRST_LOOK;
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = stop.wait_for(|stop| *stop) => true,
        };
        if state.quota.charged_once(&job.once_key) {
            // A client read it finished, and was charged.
            return;
        }
        match read(state, &job.resource_id, path).await {
            Read::Ended(tokens) => {
                if let Some(tokens) = tokens {
                    record(state, job, tokens);
                }
                return;
            }
            Read::Gone => return,
            Read::AtWork | Read::Failed => {}
        }
        if stopping || since.elapsed() >= FOLLOWED_FOR {
            tracing::warn!(
                object = ?job.object,
                stopping,
                "stopped following a run or response still at work: its tokens count only if a client reads it finished"
            );
            return;
        }
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}

/// One read of the object, with the resource's credential.
async fn read(state: &Arc<EdgeState>, resource_id: &str, path: &str) -> Read {
    let snapshot = state.snapshot();
    let Some(resource) = snapshot.resource(resource_id).filter(|r| r.active).cloned() else {
        return Read::Gone;
    };
    let Ok(uri) =
        format!("{}{path}", crate::proxy::foundry::base_of(&resource)).parse::<http::Uri>()
    else {
        return Read::Gone;
    };
    let answer = async {
        let response = crate::proxy::own_call(state, &snapshot, &resource, Method::GET, uri, None)
            .await
            .ok()?;
        let status = response.status();
        let body =
            crate::body::with_idle_timeout(response.into_body(), READ_TIMEOUT, "a followed object");
        let bytes = read_to_bytes(body, state.max_json_body_bytes).await.ok();
        Some((status, bytes))
    };
    match tokio::time::timeout(READ_TIMEOUT, answer).await {
        Ok(Some((StatusCode::NOT_FOUND | StatusCode::GONE, _))) => Read::Gone,
        Ok(Some((status, Some(bytes)))) if status.is_success() => {
            let answer = scan::scan_json(&bytes);
            match (answer.usage, answer.unfinished) {
                (Some(tokens), _) => Read::Ended(Some(tokens)),
                (None, Some(_)) => Read::AtWork,
                (None, None) => Read::Ended(None),
            }
        }
        _ => Read::Failed,
    }
}

/// Charges the ended object's tokens (unless a read of it was charged first) and records them.
fn record(state: &Arc<EdgeState>, job: &FollowUp, tokens: Tokens) {
    if !state
        .quota
        .charge(state, &job.charge, tokens.total, &job.once_key)
    {
        return;
    }
    state.metrics.followed_up(&Finished {
        method: &Method::GET,
        family: job.family,
        event_id: &job.event_id,
        served: Some(ServedBy {
            resource_id: &job.resource_id,
            model: &job.deployment,
            provider: None,
        }),
        status: 200,
        duration: Duration::ZERO,
        first_byte: None,
        streamed: false,
        tokens: Some(tokens),
        added: None,
    });
    let now_ms = chrono::Utc::now().timestamp_millis();
    state.usage.push(pb::UsageRecord {
        event_id: job.event_id.clone(),
        user_id: job.user_id.clone(),
        resource_id: job.resource_id.clone(),
        deployment_name: job.deployment.clone(),
        route_family: job.family.to_string(),
        status: 200,
        started_at_ms: now_ms,
        prompt_tokens: tokens.prompt,
        completion_tokens: tokens.completion,
        total_tokens: tokens.total,
        cached_tokens: tokens.cached,
        reasoning_tokens: tokens.reasoning,
        once_key: job.once_key.clone(),
        follow_up: true,
        ..Default::default()
    });
}
