//! Bearer-token check for gRPC services (`authorization: Bearer <token>` metadata), and the refusal
//! of a service that is switched off for want of its credential.

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::secrets::Secret;

#[derive(Clone)]
pub struct BearerToken {
    /// `None`: the service is off and every call is refused with `off`.
    expected: Option<Secret>,
    what: &'static str,
    off: &'static str,
}

impl BearerToken {
    pub fn new(expected: Secret, what: &'static str) -> Self {
        Self {
            expected: Some(expected),
            what,
            off: "",
        }
    }

    /// Refuses every call with `why` (no credential was configured for the service).
    pub fn service_off(why: &'static str) -> Self {
        Self {
            expected: None,
            what: "",
            off: why,
        }
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Err(Status::permission_denied(self.off));
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if expected.matches(token.trim()) => {
                // The connection has a caller with the credential: it may stay open.
                if let Some(connection) = request.extensions().get::<super::GrpcConnectInfo>() {
                    connection.mark_authenticated();
                }
                Ok(request)
            }
            Some(_) => Err(Status::unauthenticated(format!("invalid {}", self.what))),
            None => Err(Status::unauthenticated(format!(
                "missing credentials: send 'authorization: Bearer <{}>' metadata",
                self.what
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    /// Only a call that passes the check marks its connection (which then may stay open).
    #[test]
    fn a_call_with_the_credential_marks_its_connection() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut check = BearerToken::new(Secret::new("edge"), "edge token");
        for (token, marked) in [("wrong", false), ("edge", true)] {
            let connection = super::super::GrpcConnectInfo {
                tcp: tonic::transport::server::TcpConnectInfo {
                    local_addr: None,
                    remote_addr: None,
                },
                authenticated: Arc::new(AtomicBool::new(false)),
            };
            let mut call = request(token);
            call.extensions_mut().insert(connection.clone());
            assert_eq!(check.call(call).is_ok(), marked);
            assert_eq!(
                connection.authenticated.load(Ordering::Acquire),
                marked,
                "{token}"
            );
        }
    }

    #[test]
    fn a_service_without_a_credential_refuses_every_call() {
        let mut off = BearerToken::service_off("CatalogService is off: set AIPROXY_CATALOG_TOKEN");
        for token in ["", "anything", "adm_admin-token"] {
            let refused = off.call(request(token)).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
            assert!(refused.message().contains("AIPROXY_CATALOG_TOKEN"));
        }
        let mut on = BearerToken::new(Secret::new("cat"), "catalog token");
        assert!(on.call(request("cat")).is_ok());
        assert_eq!(
            on.call(request("adm")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
