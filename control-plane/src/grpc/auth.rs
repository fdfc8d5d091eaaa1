//! Bearer-token check for gRPC services (`authorization: Bearer <token>` metadata).

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::secrets::Secret;

#[derive(Clone)]
pub struct BearerToken {
    expected: Secret,
    what: &'static str,
}

impl BearerToken {
    pub fn new(expected: Secret, what: &'static str) -> Self {
        Self { expected, what }
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if self.expected.matches(token.trim()) => Ok(request),
            Some(_) => Err(Status::unauthenticated(format!("invalid {}", self.what))),
            None => Err(Status::unauthenticated(format!(
                "missing credentials: send 'authorization: Bearer <{}>' metadata",
                self.what
            ))),
        }
    }
}
