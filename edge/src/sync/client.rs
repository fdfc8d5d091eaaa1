//! Sync stream client with reconnect/backoff.

use std::sync::Arc;
use std::time::Duration;

use aiproxy_proto::v1 as pb;
use aiproxy_proto::v1::edge_service_client::EdgeServiceClient;
use pb::edge_message::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{ClientTlsConfig, Endpoint};

use super::chunks::ChunkAssembler;
use crate::state::EdgeState;

#[derive(Clone)]
pub struct SyncSettings {
    pub control_plane_url: String,
    pub edge_token: String,
    pub edge_id: String,
    pub region: String,
}

pub struct SyncClient {
    settings: SyncSettings,
    state: Arc<EdgeState>,
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Low enough that a restarted control plane is followed within seconds, with jitter so a fleet
/// does not reconnect at once.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

impl SyncClient {
    pub fn new(settings: SyncSettings, state: Arc<EdgeState>) -> Self {
        Self { settings, state }
    }

    /// Runs forever: one stream at a time, reconnecting after any failure. A stream that keeps
    /// failing is reported (log, `/readyz`, and to the control plane in the next Hello), so a
    /// frozen catalog never goes unnoticed.
    pub async fn run(self) {
        let mut backoff = INITIAL_BACKOFF;
        let mut last_error: Option<String> = None;
        loop {
            let mut received = false;
            let outcome = self.stream_once(last_error.as_deref(), &mut received).await;
            if received {
                backoff = INITIAL_BACKOFF;
            }
            last_error = match outcome {
                Ok(()) => {
                    tracing::warn!("sync stream ended; reconnecting");
                    None
                }
                Err(e) => Some(format!("{e:#}")),
            };
            self.state.set_sync_status(|status| {
                if status.connected {
                    status.lost_at = Some(std::time::Instant::now());
                }
                status.connected = false;
                if received {
                    status.failures_in_a_row = 0;
                }
                if let Some(error) = &last_error {
                    status.failures_in_a_row += 1;
                    status.last_error = Some(error.clone());
                }
            });
            if let Some(error) = &last_error {
                let failures = self.state.sync_status().failures_in_a_row;
                if failures >= 3 {
                    tracing::error!(%error, failures, url = %self.settings.control_plane_url, "sync keeps failing; serving a catalog that no longer follows the control plane");
                } else {
                    tracing::warn!(%error, url = %self.settings.control_plane_url, "sync with the control plane failed; serving the last snapshot");
                }
            }
            tokio::time::sleep(with_jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One stream's life; `received` tells whether any update arrived (then backoff starts over).
    async fn stream_once(
        &self,
        last_error: Option<&str>,
        received: &mut bool,
    ) -> anyhow::Result<()> {
        let mut endpoint = Endpoint::from_shared(self.settings.control_plane_url.clone())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if self.settings.control_plane_url.starts_with("https://") {
            endpoint = endpoint.tls_config(ClientTlsConfig::new().with_webpki_roots())?;
        }
        let channel = endpoint.connect().await?;
        let mut client = EdgeServiceClient::new(channel);

        let (tx, rx) = mpsc::channel(8);
        let held = self.state.snapshot();
        tx.send(pb::EdgeMessage {
            message: Some(Message::Hello(pb::Hello {
                edge_id: self.settings.edge_id.clone(),
                region: self.settings.region.clone(),
                version: if held.loaded { held.version } else { 0 },
                software_version: env!("CARGO_PKG_VERSION").to_string(),
                catalog_id: held.catalog_id.clone(),
                last_error: last_error.unwrap_or_default().to_string(),
            })),
        })
        .await?;
        drop(held);

        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        let auth = MetadataValue::try_from(format!("Bearer {}", self.settings.edge_token))
            .map_err(|_| {
                anyhow::anyhow!("AIPROXY_EDGE_TOKEN contains characters not allowed in a header")
            })?;
        request.metadata_mut().insert("authorization", auth);
        let mut inbound = client.sync(request).await?.into_inner();

        let mut chunks = ChunkAssembler::default();
        while let Some(chunk) = inbound.message().await? {
            let version = chunk.version;
            let nonce = chunk.nonce.clone();
            let reply = match chunks.push(chunk) {
                Ok(None) => continue,
                Ok(Some(update)) => {
                    if !*received {
                        *received = true;
                        self.state.set_sync_status(|status| {
                            status.connected = true;
                            status.failures_in_a_row = 0;
                            status.last_error = None;
                        });
                    }
                    self.apply(update)
                }
                Err(error) => Err(error),
            };
            let reply = match reply {
                Ok(()) => Message::Ack(pb::Ack { version, nonce }),
                Err(error) => {
                    tracing::warn!(version, %error, "rejected a catalog update; keeping the current snapshot");
                    Message::Nack(pb::Nack {
                        version,
                        nonce,
                        error,
                    })
                }
            };
            if tx
                .send(pb::EdgeMessage {
                    message: Some(reply),
                })
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    /// Ownership invalidations first (they hold whatever becomes of the catalog part), then the
    /// catalog and tokens.
    fn apply(&self, mut update: pb::SyncUpdate) -> Result<(), String> {
        self.state.usage.sum_for(update.takes_usage_sums);
        if update.reset_object_cache {
            self.state.ownership.clear();
        }
        self.state
            .ownership
            .forget_refs(&std::mem::take(&mut update.forgotten_objects));
        self.state.apply_update(update)
    }
}

/// Between half and all of `base`, so restarting control planes do not meet a herd of edges.
fn with_jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    let fraction = f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + 0.5 * fraction)
}
