//! The production store: Postgres through sqlx, migrations in `migrations/postgres`.

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::StoreResult;

pub struct PostgresCatalogStore {
    pool: PgPool,
}

impl PostgresCatalogStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            // With the database down, a call waits this long for a connection before it fails
            // (the admin API then answers 503): long enough to ride out a restart's first
            // seconds, short enough to tell an admin promptly.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
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
