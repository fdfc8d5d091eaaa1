//! Picks the credential for an identity: the chain (or the one step `AIPROXY_CREDENTIAL` pins) for
//! the proxy's own identity, and the managed-identity step for a resource's user-assigned identity.
//! The chain is assembled on the first token request, never before.

use std::sync::OnceLock;

use azure_core::http::Transport;

use super::chain::{CredentialChain, CredentialStep, StepError};
use super::powershell::AzurePowerShellStep;
use super::steps::{
    AzureCliStep, AzureDeveloperCliStep, ClientSecretStep, ManagedIdentityStep,
    WorkloadIdentityStep,
};
use super::{AccessToken, TokenKey};

/// `AIPROXY_CREDENTIAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialMode {
    /// The DefaultAzureCredential order.
    Chain,
    ClientSecret,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
    Azd,
    AzurePowershell,
    /// No credential: managed-identity resources get no token.
    None,
}

impl CredentialMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMode::Chain => "chain",
            CredentialMode::ClientSecret => "client-secret",
            CredentialMode::WorkloadIdentity => "workload-identity",
            CredentialMode::ManagedIdentity => "managed-identity",
            CredentialMode::AzureCli => "azure-cli",
            CredentialMode::Azd => "azd",
            CredentialMode::AzurePowershell => "azure-powershell",
            CredentialMode::None => "none",
        }
    }
}

/// The steps for a mode, in `DefaultAzureCredential` order. (Its Visual Studio step is
/// Windows-only and has no place on the Linux hosts the control plane runs on.)
pub fn steps_for(
    mode: CredentialMode,
    transport: &Option<Transport>,
) -> Vec<Box<dyn CredentialStep>> {
    let client_secret = || {
        Box::new(ClientSecretStep {
            transport: transport.clone(),
        }) as Box<dyn CredentialStep>
    };
    let workload = || {
        Box::new(WorkloadIdentityStep {
            transport: transport.clone(),
        }) as Box<dyn CredentialStep>
    };
    let managed = |probe_imds| {
        Box::new(ManagedIdentityStep {
            transport: transport.clone(),
            probe_imds,
        }) as Box<dyn CredentialStep>
    };
    match mode {
        CredentialMode::Chain => vec![
            client_secret(),
            workload(),
            managed(true),
            Box::new(AzureCliStep::default()),
            Box::new(AzureDeveloperCliStep::default()),
            Box::new(AzurePowerShellStep::default()),
        ],
        CredentialMode::ClientSecret => vec![client_secret()],
        CredentialMode::WorkloadIdentity => vec![workload()],
        CredentialMode::ManagedIdentity => vec![managed(false)],
        CredentialMode::AzureCli => vec![Box::new(AzureCliStep::default())],
        CredentialMode::Azd => vec![Box::new(AzureDeveloperCliStep::default())],
        CredentialMode::AzurePowershell => vec![Box::new(AzurePowerShellStep::default())],
        CredentialMode::None => Vec::new(),
    }
}

pub struct TokenProvider {
    mode: CredentialMode,
    transport: Option<Transport>,
    chain: OnceLock<CredentialChain>,
}

impl TokenProvider {
    /// `transport` replaces the HTTP client of the HTTP-based steps (tests only).
    pub fn new(mode: CredentialMode, transport: Option<Transport>) -> Self {
        Self {
            mode,
            transport,
            chain: OnceLock::new(),
        }
    }

    pub fn mode(&self) -> CredentialMode {
        self.mode
    }

    /// A token for `key` and a description of the credential that produced it.
    pub async fn token(&self, key: &TokenKey) -> Result<(AccessToken, String), String> {
        if self.mode == CredentialMode::None {
            return Err("no credential is configured (AIPROXY_CREDENTIAL=none)".into());
        }
        let scope = key.scope.as_str();
        if let Some(client_id) = &key.identity_client_id {
            if !matches!(
                self.mode,
                CredentialMode::Chain | CredentialMode::ManagedIdentity
            ) {
                return Err(format!(
                    "identity_client_id {client_id} names a user-assigned managed identity, which \
                     AIPROXY_CREDENTIAL={} cannot act as; use chain or managed-identity",
                    self.mode.as_str()
                ));
            }
            let step = ManagedIdentityStep {
                transport: self.transport.clone(),
                probe_imds: false,
            };
            return match step.get_token(scope, Some(client_id)).await {
                Ok(token) => Ok((
                    token,
                    format!("ManagedIdentityCredential (user-assigned {client_id})"),
                )),
                Err(StepError::Unavailable(e) | StepError::Failed(e)) => {
                    Err(format!("ManagedIdentityCredential: {e}"))
                }
            };
        }
        let chain = self.chain.get_or_init(|| {
            let chain = CredentialChain::new(steps_for(self.mode, &self.transport));
            tracing::info!(mode = self.mode.as_str(), steps = ?chain.step_names(), "credential chain assembled");
            chain
        });
        chain
            .get_token(scope, None)
            .await
            .map(|(t, name)| (t, name.to_string()))
            .map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_follows_the_default_azure_credential_order() {
        let names: Vec<&str> = steps_for(CredentialMode::Chain, &None)
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            names,
            [
                "EnvironmentCredential",
                "WorkloadIdentityCredential",
                "ManagedIdentityCredential",
                "AzureCliCredential",
                "AzureDeveloperCliCredential",
                "AzurePowerShellCredential"
            ]
        );
        let pinned: Vec<&str> = steps_for(CredentialMode::Azd, &None)
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(pinned, ["AzureDeveloperCliCredential"]);
        assert!(steps_for(CredentialMode::None, &None).is_empty());
    }

    #[tokio::test]
    async fn none_mode_never_mints() {
        let provider = TokenProvider::new(CredentialMode::None, None);
        let key = TokenKey {
            identity_client_id: None,
            scope: super::super::Scope::AiAzure,
        };
        assert!(
            provider
                .token(&key)
                .await
                .unwrap_err()
                .contains("AIPROXY_CREDENTIAL=none")
        );
    }
}
