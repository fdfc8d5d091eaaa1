//! The chain's steps, built on `azure_identity` 1.x credentials (which no longer ship a chain),
//! plus our Azure PowerShell step (`powershell.rs`). A fresh credential is built for every token
//! request: the broker decides when to refresh, so no second cache may hand back an old token.
//! Every step has a deadline; the tool steps run their tool through `process::ToolRunner`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, AzureDeveloperCliCredential,
    AzureDeveloperCliCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::AccessToken;
use super::chain::{CredentialStep, StepError};
use super::process::ToolRunner;
use crate::secrets::Secret;

/// How long one token request may take before the step gives up.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the chain waits for IMDS when no identity endpoint is configured: on a machine that is
/// not in Azure nothing answers there, and the chain must move on.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Retries are the token broker's job (with its own backoff); `transport` replaces the HTTP client
/// (tests point https authorities at loopback fakes this way).
fn client_options(transport: &Option<Transport>) -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::none(),
        transport: transport.clone(),
        ..Default::default()
    }
}

fn into_access_token(token: azure_core::credentials::AccessToken) -> AccessToken {
    AccessToken {
        token: Secret::new(token.token.secret()),
        expires_on_ms: token.expires_on.unix_timestamp() * 1000
            + i64::from(token.expires_on.millisecond()),
    }
}

async fn request(
    credential: &dyn TokenCredential,
    scope: &str,
    timeout: Duration,
) -> Result<azure_core::credentials::AccessToken, String> {
    match tokio::time::timeout(timeout, credential.get_token(&[scope], None)).await {
        Ok(Ok(token)) => Ok(token),
        Ok(Err(e)) => Err(error_text(&e)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

fn error_text(e: &azure_core::Error) -> String {
    let mut text = e.to_string();
    let status =
        std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source()).find_map(|e| {
            e.downcast_ref::<azure_core::Error>()
                .and_then(|e| e.http_status())
        });
    if let Some(status) = status {
        text = format!("HTTP {}: {text}", u16::from(status));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` (authority from `AZURE_AUTHORITY_HOST`).
pub struct ClientSecretStep {
    pub transport: Option<Transport>,
}

#[async_trait]
impl CredentialStep for ClientSecretStep {
    fn name(&self) -> &'static str {
        "EnvironmentCredential"
    }

    async fn get_token(&self, scope: &str, _: Option<&str>) -> Result<AccessToken, StepError> {
        let vars = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];
        let missing: Vec<&str> = vars.into_iter().filter(|v| env(v).is_none()).collect();
        if !missing.is_empty() {
            return Err(StepError::Unavailable(format!(
                "{} not set",
                missing.join(", ")
            )));
        }
        let (tenant, client, secret) = (
            env("AZURE_TENANT_ID").unwrap_or_default(),
            env("AZURE_CLIENT_ID").unwrap_or_default(),
            env("AZURE_CLIENT_SECRET").unwrap_or_default(),
        );
        let options = ClientSecretCredentialOptions {
            client_options: client_options(&self.transport),
        };
        let credential = ClientSecretCredential::new(&tenant, client, secret.into(), Some(options))
            .map_err(|e| StepError::Failed(error_text(&e)))?;
        request(credential.as_ref(), scope, TOKEN_REQUEST_TIMEOUT)
            .await
            .map(into_access_token)
            .map_err(StepError::Failed)
    }
}

/// `AZURE_FEDERATED_TOKEN_FILE` (+ `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`): AKS workload identity.
pub struct WorkloadIdentityStep {
    pub transport: Option<Transport>,
}

#[async_trait]
impl CredentialStep for WorkloadIdentityStep {
    fn name(&self) -> &'static str {
        "WorkloadIdentityCredential"
    }

    async fn get_token(&self, scope: &str, _: Option<&str>) -> Result<AccessToken, StepError> {
        let vars = [
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
        ];
        let missing: Vec<&str> = vars.into_iter().filter(|v| env(v).is_none()).collect();
        if !missing.is_empty() {
            return Err(StepError::Unavailable(format!(
                "{} not set",
                missing.join(", ")
            )));
        }
        let mut options = WorkloadIdentityCredentialOptions::default();
        options.credential_options.client_options = client_options(&self.transport);
        let credential = WorkloadIdentityCredential::new(Some(options))
            .map_err(|e| StepError::Failed(error_text(&e)))?;
        request(credential.as_ref(), scope, TOKEN_REQUEST_TIMEOUT)
            .await
            .map(into_access_token)
            .map_err(StepError::Failed)
    }
}

/// The App Service / Container Apps identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), else
/// IMDS. User-assigned identity: the resource's `identity_client_id`, else `AZURE_CLIENT_ID`
/// (`ManagedIdentityCredential` does not read it itself).
pub struct ManagedIdentityStep {
    pub transport: Option<Transport>,
    /// In the chain, IMDS that does not answer quickly means "not in Azure": unavailable.
    pub probe_imds: bool,
}

#[async_trait]
impl CredentialStep for ManagedIdentityStep {
    fn name(&self) -> &'static str {
        "ManagedIdentityCredential"
    }

    async fn get_token(
        &self,
        scope: &str,
        user_assigned: Option<&str>,
    ) -> Result<AccessToken, StepError> {
        let client_id = user_assigned
            .map(str::to_string)
            .or_else(|| env("AZURE_CLIENT_ID"));
        let app_service = env("IDENTITY_ENDPOINT").is_some() && env("IDENTITY_HEADER").is_some();
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
            client_options: client_options(&self.transport),
        };
        let credential = ManagedIdentityCredential::new(Some(options))
            .map_err(|e| StepError::Failed(error_text(&e)))?;
        let who = client_id
            .map(|id| format!("user-assigned identity {id}"))
            .unwrap_or_else(|| "system-assigned identity".into());
        if app_service {
            return request(credential.as_ref(), scope, TOKEN_REQUEST_TIMEOUT)
                .await
                .map(into_access_token)
                .map_err(|e| {
                    StepError::Failed(format!("identity endpoint (IDENTITY_ENDPOINT), {who}: {e}"))
                });
        }
        let timeout = if self.probe_imds {
            IMDS_PROBE_TIMEOUT
        } else {
            TOKEN_REQUEST_TIMEOUT
        };
        match request(credential.as_ref(), scope, timeout).await {
            Ok(token) => Ok(into_access_token(token)),
            Err(e) if self.probe_imds => Err(StepError::Unavailable(format!(
                "IDENTITY_ENDPOINT/IDENTITY_HEADER not set and IMDS gave no token ({who}): {e}"
            ))),
            Err(e) => Err(StepError::Failed(format!("IMDS, {who}: {e}"))),
        }
    }
}

fn tool_error(tool: &str, e: &azure_core::Error) -> StepError {
    StepError::Unavailable(format!("{tool}: {}", error_text(e)))
}

/// `az account get-access-token` (needs `az login`).
#[derive(Default)]
pub struct AzureCliStep {
    pub runner: ToolRunner,
}

#[async_trait]
impl CredentialStep for AzureCliStep {
    fn name(&self) -> &'static str {
        "AzureCliCredential"
    }

    async fn get_token(&self, scope: &str, _: Option<&str>) -> Result<AccessToken, StepError> {
        let options = AzureCliCredentialOptions {
            executor: Some(Arc::new(self.runner.clone())),
            ..Default::default()
        };
        let credential =
            AzureCliCredential::new(Some(options)).map_err(|e| tool_error("az", &e))?;
        match credential.get_token(&[scope], None).await {
            Ok(token) => Ok(into_access_token(token)),
            Err(e) => Err(tool_error("az", &e)),
        }
    }
}

/// `azd auth token` (needs `azd auth login`).
#[derive(Default)]
pub struct AzureDeveloperCliStep {
    pub runner: ToolRunner,
}

#[async_trait]
impl CredentialStep for AzureDeveloperCliStep {
    fn name(&self) -> &'static str {
        "AzureDeveloperCliCredential"
    }

    async fn get_token(&self, scope: &str, _: Option<&str>) -> Result<AccessToken, StepError> {
        let options = AzureDeveloperCliCredentialOptions {
            executor: Some(Arc::new(self.runner.clone())),
            ..Default::default()
        };
        let credential =
            AzureDeveloperCliCredential::new(Some(options)).map_err(|e| tool_error("azd", &e))?;
        match credential.get_token(&[scope], None).await {
            Ok(token) => Ok(into_access_token(token)),
            Err(e) => Err(tool_error("azd", &e)),
        }
    }
}
