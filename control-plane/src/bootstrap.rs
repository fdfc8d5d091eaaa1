//! Resolves the control plane's secrets. Given ones are used as they are; in the embedded mode a
//! missing one is generated once into the data dir (mode 0600) and reused on every start, so a
//! restart keeps the same admin token, edge token and encryption key. With Postgres every secret
//! must be given: a fleet cannot share a file.

use std::path::Path;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::secrets::{KeyCipher, Secret, random_token};

pub struct Secrets {
    pub admin_token: Secret,
    pub edge_token: Secret,
    pub catalog_token: Secret,
    pub cipher: KeyCipher,
}

pub fn resolve(config: &Config) -> anyhow::Result<Secrets> {
    let dir = config.resolved_data_dir();
    let embedded = config.is_embedded();
    let get = |given: &Option<String>,
               var: &str,
               file: &str,
               make: fn() -> String|
     -> anyhow::Result<String> {
        if let Some(v) = given.as_ref().filter(|v| !v.trim().is_empty()) {
            return Ok(v.trim().to_string());
        }
        if !embedded {
            bail!(
                "{var} is required when AIPROXY_DATABASE_URL is not SQLite (it is generated only in the embedded mode)"
            );
        }
        load_or_generate(&dir.join(file), make)
            .with_context(|| format!("{var}: could not keep it in {}", dir.display()))
    };
    let admin_token = get(
        &config.admin_token,
        "AIPROXY_ADMIN_TOKEN",
        "admin.token",
        || random_token("adm_"),
    )?;
    let edge_token = get(
        &config.edge_token,
        "AIPROXY_EDGE_TOKEN",
        "edge.token",
        || random_token("edg_"),
    )?;
    let encryption_key = get(
        &config.encryption_key,
        "AIPROXY_ENCRYPTION_KEY",
        "encryption.key",
        KeyCipher::generate_base64,
    )?;
    let cipher = KeyCipher::from_base64(&encryption_key)?;
    let catalog_token = config
        .catalog_token
        .clone()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| admin_token.clone());
    Ok(Secrets {
        admin_token: Secret::new(admin_token),
        edge_token: Secret::new(edge_token),
        catalog_token: Secret::new(catalog_token),
        cipher,
    })
}

fn load_or_generate(path: &Path, make: fn() -> String) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let value = make();
    write_private(path, &value)?;
    tracing::info!(file = %path.display(), "generated a secret for the embedded mode");
    Ok(value)
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")
}
