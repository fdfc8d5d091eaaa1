//! The embedded store: one SQLite file (WAL), migrations in `migrations/sqlite`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::StoreResult;

pub struct SqliteCatalogStore {
    pool: SqlitePool,
}

impl SqliteCatalogStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Self::ensure_catalog_row(&pool).await?;
        Ok(Self { pool })
    }
}

// A SQLite read transaction in WAL mode already reads one consistent snapshot.
super::sql::impl_catalog_store!(SqliteCatalogStore, sqlx::Sqlite, None::<&str>);

// Ownership writes may read first: take the write lock up front (see `ownership_sql.rs`).
super::ownership_sql::impl_ownership_store!(SqliteCatalogStore, sqlx::Sqlite, "BEGIN IMMEDIATE");

// A usage batch reads (its id) before it writes: take the write lock up front.
super::usage_sql::impl_usage_store!(SqliteCatalogStore, sqlx::Sqlite, "BEGIN IMMEDIATE");
