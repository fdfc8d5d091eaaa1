//! Resolves the control plane's secrets. Given ones are used as they are; in the embedded mode a
//! missing one is generated once into the data dir (mode 0600) and reused on every start, so a
//! restart keeps the same admin token, edge token, catalog token and encryption key. With Postgres
//! every secret must be given (a fleet cannot share a file), except the catalog token: without it
//! CatalogService is off.
//!
//! The catalog token is its own secret: other services hold it, so it must never open the admin API.

use std::path::Path;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::secrets::{KeyCipher, Secret, random_token};

pub struct Secrets {
    pub admin_token: Secret,
    pub edge_token: Secret,
    /// `None`: CatalogService is off (Postgres without `AIPROXY_CATALOG_TOKEN`).
    pub catalog_token: Option<Secret>,
    pub cipher: KeyCipher,
}

pub fn resolve(config: &Config) -> anyhow::Result<Secrets> {
    let dir = config.resolved_data_dir();
    let embedded = config.is_embedded();
    let given = |value: &Option<Secret>| {
        value
            .as_ref()
            .map(|v| v.expose().trim())
            .filter(|v| !v.is_empty())
            .map(Secret::from)
    };
    let generated = |var: &str, file: &str, make: fn() -> String| -> anyhow::Result<Secret> {
        load_or_generate(&dir.join(file), make)
            .map(Secret::new)
            .with_context(|| format!("{var}: could not keep it in {}", dir.display()))
    };
    let required = |value: &Option<Secret>,
                    var: &str,
                    file: &str,
                    make: fn() -> String|
     -> anyhow::Result<Secret> {
        if let Some(v) = given(value) {
            return Ok(v);
        }
        if !embedded {
            bail!(
                "{var} is required when AIPROXY_DATABASE_URL is not SQLite (it is generated only in the embedded mode)"
            );
        }
        generated(var, file, make)
    };
    let admin_token = required(
        &config.admin_token,
        "AIPROXY_ADMIN_TOKEN",
        "admin.token",
        || random_token("adm_"),
    )?;
    let edge_token = required(
        &config.edge_token,
        "AIPROXY_EDGE_TOKEN",
        "edge.token",
        || random_token("edg_"),
    )?;
    let encryption_key = required(
        &config.encryption_key,
        "AIPROXY_ENCRYPTION_KEY",
        "encryption.key",
        KeyCipher::generate_base64,
    )?;
    let cipher = KeyCipher::from_base64(encryption_key.expose())?;
    let catalog_token = match given(&config.catalog_token) {
        Some(token) => Some(token),
        None if embedded => Some(generated("AIPROXY_CATALOG_TOKEN", "catalog.token", || {
            random_token("cat_")
        })?),
        None => {
            tracing::info!(
                "AIPROXY_CATALOG_TOKEN is not set: CatalogService is off (its calls are refused)"
            );
            None
        }
    };
    if catalog_token
        .as_ref()
        .is_some_and(|t| admin_token.matches(t.expose()))
    {
        bail!(
            "AIPROXY_CATALOG_TOKEN must differ from AIPROXY_ADMIN_TOKEN: services that read the catalog must not be able to administer it"
        );
    }
    Ok(Secrets {
        admin_token,
        edge_token,
        catalog_token,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["aiproxy-control-plane"];
        all.extend_from_slice(args);
        Config::parse_from(all)
    }

    fn temp_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("aiproxy-boot-{}", uuid::Uuid::new_v4().simple()))
    }

    #[test]
    fn the_embedded_mode_generates_a_catalog_token_of_its_own_and_keeps_it() {
        let dir = temp_dir();
        let dir_arg = dir.display().to_string();
        let args = ["--data-dir", dir_arg.as_str()];
        let first = resolve(&config(&args)).unwrap();
        let catalog = first.catalog_token.clone().expect("generated");
        assert!(catalog.expose().starts_with("cat_"));
        assert!(!first.admin_token.matches(catalog.expose()));
        let kept = std::fs::read_to_string(dir.join("catalog.token")).unwrap();
        assert_eq!(kept.trim(), catalog.expose());
        let again = resolve(&config(&args)).unwrap();
        assert_eq!(again.catalog_token, Some(catalog), "reused after a restart");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn with_postgres_no_catalog_token_means_catalog_service_off() {
        let key = KeyCipher::generate_base64();
        let secrets = resolve(&config(&[
            "--database-url",
            "postgres://127.0.0.1:1/none",
            "--admin-token",
            "adm",
            "--edge-token",
            "edg",
            "--encryption-key",
            &key,
        ]))
        .unwrap();
        assert!(secrets.catalog_token.is_none());
    }

    #[test]
    fn the_catalog_token_may_not_be_the_admin_token() {
        let dir = temp_dir();
        let dir_arg = dir.display().to_string();
        let err = resolve(&config(&[
            "--data-dir",
            &dir_arg,
            "--admin-token",
            "same",
            "--catalog-token",
            "same",
        ]))
        .err()
        .expect("refused");
        assert!(err.to_string().contains("AIPROXY_CATALOG_TOKEN"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
