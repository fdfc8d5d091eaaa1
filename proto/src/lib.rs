//! The `aiproxy.v1` gRPC contract: `EdgeService.Sync` (control plane ⇄ edges, carries secrets) and
//! `CatalogService` (read-only catalog for other services, never carries secrets).

pub mod v1 {
    tonic::include_proto!("aiproxy.v1");

    /// Encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("aiproxy_descriptor");
}

/// Longest `UsageRecord.once_key` the control plane accepts, in bytes: a longer one has its whole
/// batch refused, so the edge replaces it by a digest first.
pub const MAX_ONCE_KEY_BYTES: usize = 512;

/// A `v1::UsageBatch` already encoded, sent as it is: an edge encodes each batch once, for the
/// wire and for its spill file alike (`EdgeService.ReportUsage` with [`ReportUsageCodec`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedUsageBatch(pub bytes::Bytes);

impl prost::Message for EncodedUsageBatch {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    /// Never decoded (the control plane reads `v1::UsageBatch`): fields are skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The codec of `EdgeService.ReportUsage` with a batch encoded beforehand.
pub type ReportUsageCodec = tonic_prost::ProstCodec<EncodedUsageBatch, v1::UsageAck>;
/// The method path of `EdgeService.ReportUsage`.
pub const REPORT_USAGE_PATH: &str = "/aiproxy.v1.EdgeService/ReportUsage";

/// `Debug` for the messages that carry secrets (upstream keys, managed-identity tokens, the key
/// hash secret): everything but the secret, so a stray `?update` in a log leaks nothing.
mod redacted_debug {
    use std::fmt;

    use super::v1::{EdgeResource, ManagedIdentityToken, SyncUpdate};

    fn stars(secret: &[u8]) -> &'static str {
        if secret.is_empty() { "" } else { "***" }
    }

    impl fmt::Debug for EdgeResource {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("EdgeResource")
                .field("info", &self.info)
                .field("api_key", &stars(self.api_key.as_bytes()))
                .field("token_scope", &self.token_scope)
                .finish()
        }
    }

    impl fmt::Debug for ManagedIdentityToken {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ManagedIdentityToken")
                .field("identity_client_id", &self.identity_client_id)
                .field("scope", &self.scope)
                .field("access_token", &stars(self.access_token.as_bytes()))
                .field("expires_on_ms", &self.expires_on_ms)
                .finish()
        }
    }

    impl fmt::Debug for SyncUpdate {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SyncUpdate")
                .field("version", &self.version)
                .field("nonce", &self.nonce)
                .field("full", &self.full)
                .field("base_version", &self.base_version)
                .field("resources", &self.resources)
                .field("events", &self.events)
                .field("attendees", &self.attendees.len())
                .field("removals", &self.removals)
                .field("key_hash_secret", &stars(&self.key_hash_secret))
                .field("catalog_id", &self.catalog_id)
                .field("tokens_included", &self.tokens_included)
                .field("tokens", &self.tokens)
                .field("more", &self.more)
                .field("forgotten_objects", &self.forgotten_objects)
                .field("reset_object_cache", &self.reset_object_cache)
                .finish()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn secrets_do_not_print() {
            let update = SyncUpdate {
                resources: vec![EdgeResource {
                    api_key: "upstream-secret".into(),
                    ..Default::default()
                }],
                tokens: vec![ManagedIdentityToken {
                    access_token: "token-secret".into(),
                    ..Default::default()
                }],
                key_hash_secret: b"hash-secret".to_vec(),
                ..Default::default()
            };
            let printed = format!("{update:?}");
            for secret in ["upstream-secret", "token-secret", "hash-secret", "104, 97"] {
                assert!(!printed.contains(secret), "{printed}");
            }
        }
    }
}
