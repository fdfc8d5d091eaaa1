//! The credential chain, in `DefaultAzureCredential` order. Each step says whether it is
//! *unavailable* (not configured here: try the next) or *failed* (configured, but it could not get
//! a token: stop, as the Azure SDKs do). The first step that yields a token is kept for every later
//! request and logged; when none works, the error lists what each step tried and why it failed.

use std::sync::Mutex;

use async_trait::async_trait;

use super::AccessToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// Not configured in this environment (missing variables, tool not installed, no endpoint).
    Unavailable(String),
    /// Configured, but the token request failed.
    Failed(String),
}

#[async_trait]
pub trait CredentialStep: Send + Sync {
    /// The Azure SDK's name for it (`ManagedIdentityCredential`, `AzureCliCredential`, …).
    fn name(&self) -> &'static str;
    /// A token for `scope`; `user_assigned` asks for a user-assigned managed identity.
    async fn get_token(
        &self,
        scope: &str,
        user_assigned: Option<&str>,
    ) -> Result<AccessToken, StepError>;
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ChainError(pub String);

pub struct CredentialChain {
    steps: Vec<Box<dyn CredentialStep>>,
    chosen: Mutex<Option<usize>>,
}

impl CredentialChain {
    pub fn new(steps: Vec<Box<dyn CredentialStep>>) -> Self {
        Self {
            steps,
            chosen: Mutex::new(None),
        }
    }

    pub fn step_names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name()).collect()
    }

    /// The name of the step in use, once one has produced a token.
    pub fn chosen(&self) -> Option<&'static str> {
        let chosen = *self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        chosen.map(|i| self.steps[i].name())
    }

    pub async fn get_token(
        &self,
        scope: &str,
        user_assigned: Option<&str>,
    ) -> Result<(AccessToken, &'static str), ChainError> {
        let chosen = *self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = chosen {
            let step = &self.steps[i];
            return match step.get_token(scope, user_assigned).await {
                Ok(token) => Ok((token, step.name())),
                Err(StepError::Unavailable(reason) | StepError::Failed(reason)) => {
                    Err(ChainError(format!("{}: {reason}", step.name())))
                }
            };
        }
        let mut attempts = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            match step.get_token(scope, user_assigned).await {
                Ok(token) => {
                    *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some(i);
                    tracing::info!(
                        credential = step.name(),
                        identity = user_assigned.unwrap_or("default"),
                        "managed identity: using {} from now on",
                        step.name()
                    );
                    return Ok((token, step.name()));
                }
                Err(StepError::Unavailable(reason)) => {
                    attempts.push(format!("- {}: {reason}", step.name()))
                }
                Err(StepError::Failed(reason)) => {
                    attempts.push(format!("- {}: {reason}", step.name()));
                    return Err(aggregate(scope, &attempts));
                }
            }
        }
        Err(aggregate(scope, &attempts))
    }
}

fn aggregate(scope: &str, attempts: &[String]) -> ChainError {
    ChainError(format!(
        "no credential could provide a token for {scope}. Attempts:\n{}",
        attempts.join("\n")
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::secrets::Secret;

    pub struct FakeStep {
        pub name: &'static str,
        pub result: Result<&'static str, StepError>,
        pub calls: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl CredentialStep for FakeStep {
        fn name(&self) -> &'static str {
            self.name
        }

        async fn get_token(&self, _: &str, _: Option<&str>) -> Result<AccessToken, StepError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.result.clone().map(|t| AccessToken {
                token: Secret::new(t),
                expires_on_ms: 1,
            })
        }
    }

    fn step(
        name: &'static str,
        result: Result<&'static str, StepError>,
    ) -> (Box<dyn CredentialStep>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            Box::new(FakeStep {
                name,
                result,
                calls: calls.clone(),
            }),
            calls,
        )
    }

    #[tokio::test]
    async fn unavailable_steps_are_skipped_and_the_first_success_is_kept() {
        let (a, a_calls) = step(
            "EnvironmentCredential",
            Err(StepError::Unavailable("no vars".into())),
        );
        let (b, b_calls) = step("ManagedIdentityCredential", Ok("mi-token"));
        let (c, c_calls) = step("AzureCliCredential", Ok("cli-token"));
        let chain = CredentialChain::new(vec![a, b, c]);
        let (token, name) = chain.get_token("s", None).await.unwrap();
        assert_eq!(
            (token.token.expose(), name),
            ("mi-token", "ManagedIdentityCredential")
        );
        assert_eq!(chain.chosen(), Some("ManagedIdentityCredential"));
        chain.get_token("s", None).await.unwrap();
        assert_eq!(
            a_calls.load(Ordering::SeqCst),
            1,
            "the kept credential is used directly"
        );
        assert_eq!(b_calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            c_calls.load(Ordering::SeqCst),
            0,
            "later steps are never tried"
        );
    }

    #[tokio::test]
    async fn a_failed_step_stops_the_chain_and_the_error_lists_every_attempt() {
        let (a, _) = step(
            "EnvironmentCredential",
            Err(StepError::Unavailable("AZURE_TENANT_ID is not set".into())),
        );
        let (b, _) = step(
            "ManagedIdentityCredential",
            Err(StepError::Failed("identity endpoint answered 500".into())),
        );
        let (c, c_calls) = step("AzureCliCredential", Ok("cli-token"));
        let chain = CredentialChain::new(vec![a, b, c]);
        let err = chain
            .get_token("https://ai.azure.com/.default", None)
            .await
            .unwrap_err()
            .0;
        assert!(err.contains("https://ai.azure.com/.default"), "{err}");
        assert!(
            err.contains("- EnvironmentCredential: AZURE_TENANT_ID is not set"),
            "{err}"
        );
        assert!(
            err.contains("- ManagedIdentityCredential: identity endpoint answered 500"),
            "{err}"
        );
        assert_eq!(c_calls.load(Ordering::SeqCst), 0);
        assert_eq!(chain.chosen(), None);
    }

    #[tokio::test]
    async fn all_unavailable_lists_all_in_order() {
        let steps: Vec<Box<dyn CredentialStep>> = ["A", "B", "C"]
            .into_iter()
            .map(|n| step(n, Err(StepError::Unavailable(format!("{n} missing")))).0)
            .collect();
        let err = CredentialChain::new(steps)
            .get_token("s", None)
            .await
            .unwrap_err()
            .0;
        let lines: Vec<&str> = err.lines().skip(1).collect();
        assert_eq!(
            lines,
            ["- A: A missing", "- B: B missing", "- C: C missing"]
        );
    }
}
