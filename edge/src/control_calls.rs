//! The few calls an edge makes to the control plane besides the Sync stream, for state shared by the
//! fleet: Foundry object ownership (record each object an attendee creates, synchronously, before
//! answering; forget it when deleted; look owners up in batches; list an attendee's objects) and
//! leases on the attendees' daily request allowance.

use std::time::Duration;

use aiproxy_proto::v1 as pb;
use aiproxy_proto::v1::edge_service_client::EdgeServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Longest a background call (a usage batch) may take.
const BACKGROUND_DEADLINE: Duration = Duration::from_secs(10);

pub struct ControlPlaneCalls {
    channel: Channel,
    /// For calls no request waits on (usage batches): a longer deadline, and no breaker.
    background: Channel,
    authorization: MetadataValue<tonic::metadata::Ascii>,
    /// Every call here sits on some request's path: none may hold it longer than this.
    deadline: Duration,
    breaker: Breaker,
}

/// The control plane answered nothing useful (down, overloaded, its database gone), as opposed to
/// an answer such as "not found".
fn unreachable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
    )
}

/// After a few calls in a row fail, calls are not made for a short while (then one is tried).
#[derive(Default)]
struct Breaker {
    state: std::sync::Mutex<(u32, Option<std::time::Instant>)>,
}

impl Breaker {
    const FAILURES_TO_OPEN: u32 = 3;
    const OPEN_FOR: Duration = Duration::from_secs(2);

    fn open_for(&self) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let until = state.1?;
        let now = std::time::Instant::now();
        if now < until {
            return Some(until - now);
        }
        // Half open: this call goes through; a failure opens the breaker again at once.
        state.0 = Self::FAILURES_TO_OPEN - 1;
        state.1 = None;
        None
    }

    fn failed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += 1;
        if state.0 >= Self::FAILURES_TO_OPEN {
            state.1 = Some(std::time::Instant::now() + Self::OPEN_FOR);
        }
    }

    fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (0, None);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Another attendee owns one of the ids (or names).
    #[error("{0}")]
    Taken(String),
    #[error("{0}")]
    Failed(String),
}

impl ControlPlaneCalls {
    /// Connects lazily: nothing is dialled until the first call.
    pub fn new(
        control_plane_url: &str,
        edge_token: &str,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = |deadline| -> anyhow::Result<Endpoint> {
            let mut endpoint = Endpoint::from_shared(control_plane_url.to_string())?
                .connect_timeout(Duration::from_secs(5))
                .timeout(deadline);
            if control_plane_url.starts_with("https://") {
                endpoint = endpoint.tls_config(ClientTlsConfig::new().with_webpki_roots())?;
            }
            Ok(endpoint)
        };
        let authorization =
            MetadataValue::try_from(format!("Bearer {edge_token}")).map_err(|_| {
                anyhow::anyhow!("AIPROXY_EDGE_TOKEN contains characters not allowed in a header")
            })?;
        Ok(Self {
            channel: endpoint(deadline)?.connect_lazy(),
            background: endpoint(BACKGROUND_DEADLINE)?.connect_lazy(),
            authorization,
            deadline,
            breaker: Breaker::default(),
        })
    }

    /// `call`, given up once the deadline passes (connecting included). While the control plane
    /// keeps failing (the breaker is open) calls fail at once instead of each costing a request
    /// the whole deadline.
    async fn within<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        if let Some(wait) = self.breaker.open_for() {
            return Err(tonic::Status::unavailable(format!(
                "the control plane is failing; not asked again for {} ms",
                wait.as_millis()
            )));
        }
        let answer = match tokio::time::timeout(self.deadline, call).await {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "the control plane did not answer within {} ms",
                self.deadline.as_millis()
            ))),
        };
        match &answer {
            Err(status) if unreachable(status) => self.breaker.failed(),
            _ => self.breaker.succeeded(),
        }
        answer
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// Records new objects (all or none) before the edge answers the call that created them;
    /// how many this call wrote (those recorded already for the same attendee are not counted).
    pub async fn record(&self, objects: Vec<pb::OwnedObject>) -> Result<u32, RecordError> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        match self
            .within(client.record_objects(self.request(pb::OwnedObjects { objects })))
            .await
        {
            Ok(ack) => Ok(ack.written),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                Err(RecordError::Taken(s.message().to_string()))
            }
            Err(s) => Err(RecordError::Failed(s.message().to_string())),
        }
    }

    pub async fn forget(&self, kind: &str, id: &str) -> Result<(), String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        let reference = pb::ObjectRef {
            kind: kind.to_string(),
            id: id.to_string(),
        };
        match self
            .within(client.forget_object(self.request(reference)))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s.message().to_string()),
        }
    }

    /// A lease on one of the event's counters (see `crate::quota`): what was granted and left.
    pub async fn lease(&self, request: pb::LeaseRequest) -> Result<pb::Lease, String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        self.within(client.lease_requests(self.request(request)))
            .await
            .map_err(|s| s.message().to_string())
    }

    /// Delivers one batch of usage records; `Ok(true)` if it had been delivered before.
    pub async fn report_usage(
        &self,
        batch: aiproxy_proto::EncodedUsageBatch,
    ) -> Result<bool, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.background.clone());
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("the channel is not ready: {e}")))?;
        grpc.unary(
            self.request(batch),
            http::uri::PathAndQuery::from_static(aiproxy_proto::REPORT_USAGE_PATH),
            aiproxy_proto::ReportUsageCodec::default(),
        )
        .await
        .map(|ack| ack.into_inner().duplicate)
    }

    /// An attendee's usage on one UTC day, and the event's total tokens. On the background
    /// channel, outside the breaker: however often a client asks, it cannot make lease calls
    /// look failed (which would let calls through unchecked).
    pub async fn usage(&self, query: pb::UsageQuery) -> Result<pb::UsageSummary, String> {
        let mut client = EdgeServiceClient::new(self.background.clone());
        match tokio::time::timeout(self.deadline, client.get_usage(self.request(query))).await {
            Ok(answer) => answer
                .map(tonic::Response::into_inner)
                .map_err(|s| s.message().to_string()),
            Err(_) => Err("the control plane did not answer in time".into()),
        }
    }

    /// The recorded, unexpired owners among `refs` (the others are not in the answer).
    pub async fn lookup(&self, refs: Vec<pb::ObjectRef>) -> Result<Vec<pb::OwnedObject>, String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        let request = self.request(pb::ObjectRefs { refs });
        self.within(client.lookup_objects(request))
            .await
            .map(|found| found.objects)
            .map_err(|s| s.message().to_string())
    }

    /// One page of an attendee's objects of one kind, and whether more follow.
    pub async fn list_owned(
        &self,
        query: pb::OwnedObjectsQuery,
    ) -> Result<(Vec<pb::OwnedObject>, bool), String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        let request = self.request(query);
        self.within(client.list_owned_objects(request))
            .await
            .map(|page| (page.objects, page.has_more))
            .map_err(|s| s.message().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_control_plane_is_not_asked_again_for_a_while() {
        // Nothing listens on port 9 of loopback: every call fails at once.
        let calls =
            ControlPlaneCalls::new("http://127.0.0.1:9", "token", Duration::from_millis(250))
                .unwrap();
        for _ in 0..Breaker::FAILURES_TO_OPEN {
            let e = calls.lookup(Vec::new()).await.unwrap_err();
            assert!(!e.contains("not asked again"), "{e}");
        }
        let started = std::time::Instant::now();
        let e = calls.lookup(Vec::new()).await.unwrap_err();
        assert!(e.contains("not asked again"), "{e}");
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
