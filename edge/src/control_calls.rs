//! The few calls an edge makes to the control plane besides the Sync stream, for state shared by the
//! fleet: Foundry object ownership (record each object an attendee creates, synchronously, before
//! answering; forget it when deleted; look up one the snapshot does not know yet) and leases on the
//! attendees' daily request allowance.

use std::time::Duration;

use aiproxy_proto::v1 as pb;
use aiproxy_proto::v1::edge_service_client::EdgeServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub struct ControlPlaneCalls {
    channel: Channel,
    authorization: MetadataValue<tonic::metadata::Ascii>,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl ControlPlaneCalls {
    /// Connects lazily: nothing is dialled until the first call.
    pub fn new(control_plane_url: &str, edge_token: &str) -> anyhow::Result<Self> {
        let mut endpoint = Endpoint::from_shared(control_plane_url.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT);
        if control_plane_url.starts_with("https://") {
            endpoint = endpoint.tls_config(ClientTlsConfig::new().with_webpki_roots())?;
        }
        let authorization =
            MetadataValue::try_from(format!("Bearer {edge_token}")).map_err(|_| {
                anyhow::anyhow!("AIPROXY_EDGE_TOKEN contains characters not allowed in a header")
            })?;
        Ok(Self {
            channel: endpoint.connect_lazy(),
            authorization,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    pub async fn record(&self, object: pb::OwnedObject) -> Result<(), String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        client
            .record_object(self.request(object))
            .await
            .map(|_| ())
            .map_err(|s| s.message().to_string())
    }

    pub async fn forget(&self, kind: &str, id: &str) -> Result<(), String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        let reference = pb::ObjectRef {
            kind: kind.to_string(),
            id: id.to_string(),
        };
        match client.forget_object(self.request(reference)).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s.message().to_string()),
        }
    }

    /// Up to `wanted` requests of an attendee's allowance for `day` (UTC, YYYY-MM-DD).
    pub async fn lease_requests(
        &self,
        event_id: &str,
        user_id: &str,
        day: &str,
        wanted: u32,
    ) -> Result<u32, String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        let request = pb::LeaseRequest {
            event_id: event_id.into(),
            user_id: user_id.into(),
            day: day.into(),
            wanted,
        };
        client
            .lease_requests(self.request(request))
            .await
            .map(|r| r.into_inner().granted)
            .map_err(|s| s.message().to_string())
    }

    /// `Ok(None)` when the control plane has no record of it.
    pub async fn lookup(&self, kind: &str, id: &str) -> Result<Option<pb::OwnedObject>, String> {
        let mut client = EdgeServiceClient::new(self.channel.clone());
        let reference = pb::ObjectRef {
            kind: kind.to_string(),
            id: id.to_string(),
        };
        match client.lookup_object(self.request(reference)).await {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s.message().to_string()),
        }
    }
}
