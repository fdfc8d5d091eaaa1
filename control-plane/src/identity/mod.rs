//! Managed identity on the control plane: which Entra ID scope a resource needs (`scope`), the
//! `DefaultAzureCredential`-ordered chain of credentials that can mint a token (`chain`, with the
//! steps in `steps`, the PowerShell step in `powershell`, and the deadline-bound runner of their
//! command-line tools in `process`), and `provider`, which picks the credential for an identity. Only the control plane ever holds a credential; edges get tokens.

pub mod chain;
pub mod powershell;
pub mod process;
pub mod provider;
pub mod scope;
pub mod steps;

pub use provider::{CredentialMode, TokenProvider};
pub use scope::Scope;

use crate::secrets::Secret;

/// A token as a credential returned it.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: Secret,
    /// Unix milliseconds.
    pub expires_on_ms: i64,
}

/// One token per (identity, scope): `identity_client_id` is a user-assigned identity's client id,
/// or `None` for the proxy's own identity (the chain's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    pub identity_client_id: Option<String>,
    pub scope: Scope,
}

impl TokenKey {
    /// How the identity is shown to operators.
    pub fn identity_label(&self) -> String {
        match &self.identity_client_id {
            Some(id) => format!("user-assigned {id}"),
            None => "the proxy's identity".to_string(),
        }
    }
}

impl std::fmt::Display for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} for {}", self.identity_label(), self.scope.as_str())
    }
}
