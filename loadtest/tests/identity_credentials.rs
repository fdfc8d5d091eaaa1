//! The credential steps against fakes, in-process: the client-secret credential through an injected
//! transport to a fake Entra endpoint (its authority must be https), the developer tools as fake
//! `az`, `azd` and `pwsh` on PATH, and the chain falling through to the first one that works.
//! One test function: the steps read the process environment, so nothing here runs concurrently.

use aiproxy_control_plane::identity::{CredentialMode, Scope, TokenKey, TokenProvider};
use aiproxy_loadtest::identity::{FakeEntra, LoopbackTransport, audience_of};
use azure_core::http::Transport;

const AZURE_VARS: [&str; 9] = [
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "IMDS_ENDPOINT",
];

fn set(name: &str, value: &str) {
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe { std::env::set_var(name, value) }
}

fn clear_azure_environment() {
    for var in AZURE_VARS {
        // SAFETY: as above.
        unsafe { std::env::remove_var(var) }
    }
}

fn key(scope: Scope) -> TokenKey {
    TokenKey {
        identity_client_id: None,
        scope,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_steps_against_fakes() {
    clear_azure_environment();
    let fakes = concat!(env!("CARGO_MANIFEST_DIR"), "/fakes/bin");
    let system_path = "/usr/local/bin:/usr/bin:/bin";

    // 1. Client secret: the https authority is kept, the transport delivers to the loopback fake.
    let entra = FakeEntra::start("app-1", "secret-1").await.unwrap();
    let transport = LoopbackTransport::new(entra.addr);
    set("AZURE_TENANT_ID", "tenant-1");
    set("AZURE_CLIENT_ID", "app-1");
    set("AZURE_CLIENT_SECRET", "secret-1");
    let provider = TokenProvider::new(
        CredentialMode::ClientSecret,
        Some(Transport::new(transport.clone())),
    );
    let (token, source) = provider
        .token(&key(Scope::AiAzure))
        .await
        .expect("client-secret token");
    assert_eq!(source, "EnvironmentCredential");
    assert_eq!(
        audience_of(token.token.expose()).as_deref(),
        Some("https://ai.azure.com")
    );
    let call = entra.calls().pop().unwrap();
    assert_eq!(call.path, "/tenant-1/oauth2/v2.0/token");
    assert!(
        call.original_url
            .starts_with("https://login.microsoftonline.com/tenant-1/"),
        "{}",
        call.original_url
    );
    assert_eq!(call.form["scope"], "https://ai.azure.com/.default");
    assert_eq!(call.form["grant_type"], "client_credentials");

    set("AZURE_CLIENT_SECRET", "wrong-secret");
    let provider = TokenProvider::new(
        CredentialMode::ClientSecret,
        Some(Transport::new(transport.clone())),
    );
    let err = provider.token(&key(Scope::AiAzure)).await.unwrap_err();
    assert!(err.contains("AADSTS7000215"), "{err}");
    assert!(
        !err.contains("wrong-secret"),
        "errors never echo the secret: {err}"
    );
    clear_azure_environment();

    // 2. Developer tools, as fakes on PATH.
    set("PATH", &format!("{fakes}:{system_path}"));
    for (mode, scope, name) in [
        (
            CredentialMode::AzureCli,
            Scope::CognitiveServices,
            "AzureCliCredential",
        ),
        (
            CredentialMode::Azd,
            Scope::AiAzure,
            "AzureDeveloperCliCredential",
        ),
        (
            CredentialMode::AzurePowershell,
            Scope::Search,
            "AzurePowerShellCredential",
        ),
    ] {
        let (token, source) = TokenProvider::new(mode, None)
            .token(&key(scope))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(source, name);
        assert_eq!(
            audience_of(token.token.expose()).as_deref(),
            Some(scope.resource()),
            "{name}"
        );
        assert!(
            token.expires_on_ms > chrono::Utc::now().timestamp_millis() + 3_000_000,
            "{name}"
        );
    }
    set("FAKE_AZ_MODE", "logged-out");
    let err = TokenProvider::new(CredentialMode::AzureCli, None)
        .token(&key(Scope::CognitiveServices))
        .await
        .unwrap_err();
    assert!(err.contains("az login"), "{err}");

    // 3. The chain: nothing configured until the CLI; the managed-identity probe goes through the
    // injected transport (to the loopback fake, which has no such endpoint), then az is logged out,
    // so azd is the first that works and is kept.
    let chain = TokenProvider::new(
        CredentialMode::Chain,
        Some(Transport::new(transport.clone())),
    );
    let (token, source) = chain
        .token(&key(Scope::CognitiveServices))
        .await
        .expect("chain token");
    assert_eq!(source, "AzureDeveloperCliCredential");
    assert_eq!(
        audience_of(token.token.expose()).as_deref(),
        Some("https://cognitiveservices.azure.com")
    );
    assert!(
        transport
            .seen()
            .iter()
            .any(|u| u.contains("/metadata/identity/oauth2/token")),
        "the managed-identity probe was made through the loopback transport: {:?}",
        transport.seen()
    );

    // 4. Nothing works: the error lists every step in order, with why.
    set("PATH", system_path);
    let chain = TokenProvider::new(
        CredentialMode::Chain,
        Some(Transport::new(transport.clone())),
    );
    let err = chain
        .token(&key(Scope::CognitiveServices))
        .await
        .unwrap_err();
    let order = [
        "EnvironmentCredential: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set",
        "WorkloadIdentityCredential: AZURE_FEDERATED_TOKEN_FILE",
        "ManagedIdentityCredential: IDENTITY_ENDPOINT/IDENTITY_HEADER not set",
        "AzureCliCredential: az",
        "AzureDeveloperCliCredential: azd",
        "AzurePowerShellCredential: pwsh (PowerShell 7) is not installed",
    ];
    let mut at = 0;
    for expected in order {
        let found = err[at..]
            .find(expected)
            .unwrap_or_else(|| panic!("'{expected}' missing or out of order in:\n{err}"));
        at += found + expected.len();
    }
}
