//! The `aiproxy.v1` gRPC contract: `EdgeService.Sync` (control plane ⇄ edges, carries secrets) and
//! `CatalogService` (read-only catalog for other services, never carries secrets).

pub mod v1 {
    tonic::include_proto!("aiproxy.v1");

    /// Encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("aiproxy_descriptor");
}
