//! The production store: Postgres through sqlx, migrations in `migrations/postgres`.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreResult;

pub struct PostgresCatalogStore {
    pool: PgPool,
}

/// How the catalog pool's connections show in `pg_stat_activity` (unless the URL names one).
pub const APPLICATION_NAME: &str = "aiproxy-control-plane";

impl PostgresCatalogStore {
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let mut options = PgConnectOptions::from_str(url)?;
        if options.get_application_name().is_none() {
            options = options.application_name(APPLICATION_NAME);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // With the database down, a call waits this long for a connection before it fails
            // (the admin API then answers 503): long enough to ride out a restart's first
            // seconds, short enough to tell an admin promptly.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Self::ensure_catalog_row(&pool).await?;
        Ok(Self { pool })
    }
}

super::sql::impl_catalog_store!(
    PostgresCatalogStore,
    sqlx::Postgres,
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
);

super::ownership_sql::impl_ownership_store!(PostgresCatalogStore, sqlx::Postgres, "BEGIN");

super::usage_sql::impl_usage_store!(PostgresCatalogStore, sqlx::Postgres, "BEGIN");
