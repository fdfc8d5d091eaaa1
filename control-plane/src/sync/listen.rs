//! Change notifications between control-plane replicas through Postgres `LISTEN/NOTIFY`.
//!
//! Migration `0006_change_notify.sql` makes every commit that moves the catalog version or logs a
//! forget send `version:<n>` or `forget:<seq>` on channel [`CHANNEL`]. One task per replica listens
//! on its own connection and raises the [`ChangeFeed`] as notifications arrive, so the other
//! replicas' writes reach this replica's edges within milliseconds instead of a poll interval.
//!
//! Notifications are hints: those sent while the connection was down are lost, so after every
//! (re)connection the task re-reads both numbers from the store. The poller
//! (`ChangeFeed::spawn_poller`) keeps running as the fallback, e.g. for a connection that hangs
//! without an error.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::ChangeFeed;
use crate::catalog::store::CatalogStore;

/// The channel the migration's triggers notify.
pub const CHANNEL: &str = "aiproxy_changes";

/// The `application_name` of the listening connection (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "aiproxy-change-listener";

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// What one notification says moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Version(u64),
    Forget(u64),
}

/// Reads a payload the triggers send; `None` for anything else.
pub fn parse(payload: &str) -> Option<Change> {
    let (what, number) = payload.split_once(':')?;
    let number = number.parse().ok()?;
    match what {
        "version" => Some(Change::Version(number)),
        "forget" => Some(Change::Forget(number)),
        _ => None,
    }
}

/// Whether `database_url` names a database that sends change notifications (Postgres).
pub fn supported(database_url: &str) -> bool {
    database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
}

/// Listens until aborted; see the module documentation. `database_url` must be a Postgres URL.
pub fn spawn(
    feed: ChangeFeed,
    store: Arc<dyn CatalogStore>,
    database_url: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut retry = FIRST_RETRY;
        loop {
            match listen(&database_url).await {
                Ok(mut listener) => {
                    tracing::info!(
                        channel = CHANNEL,
                        "listening for catalog changes from other replicas"
                    );
                    retry = FIRST_RETRY;
                    feed.refresh(store.as_ref()).await;
                    let error = receive(&feed, store.as_ref(), &mut listener).await;
                    tracing::warn!(
                        error = %error,
                        "lost the change-notification connection; until it is back, other replicas' writes arrive by polling (AIPROXY_CHANGE_POLL_MS)"
                    );
                }
                Err(error) => {
                    tracing::warn!(
                        error = %error,
                        retry_in_ms = retry.as_millis() as u64,
                        "cannot listen for change notifications; other replicas' writes arrive by polling (AIPROXY_CHANGE_POLL_MS)"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    })
}

/// A listener on its own one-connection pool, subscribed to [`CHANNEL`].
async fn listen(database_url: &str) -> Result<PgListener, sqlx::Error> {
    let options = PgConnectOptions::from_str(database_url)?.application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Feeds notifications to `feed` until the connection fails beyond what the listener repairs on
/// its own; returns that error.
async fn receive(
    feed: &ChangeFeed,
    store: &dyn CatalogStore,
    listener: &mut PgListener,
) -> sqlx::Error {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match parse(notification.payload()) {
                Some(Change::Version(v)) => feed.notify(v),
                Some(Change::Forget(seq)) => feed.notify_forget(seq),
                None => tracing::debug!(
                    payload = notification.payload(),
                    "ignored an unknown change notification"
                ),
            },
            // The connection dropped and the listener has connected and subscribed again:
            // whatever was notified in between is lost.
            Ok(None) => {
                tracing::warn!("the change-notification connection dropped and was re-established");
                feed.refresh(store).await;
            }
            Err(error) => return error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_number_that_moved() {
        assert_eq!(parse("version:42"), Some(Change::Version(42)));
        assert_eq!(parse("forget:7"), Some(Change::Forget(7)));
        assert_eq!(parse("version:"), None);
        assert_eq!(parse("other:1"), None);
        assert_eq!(parse("version"), None);
        assert!(supported("postgres://u@h/db"));
        assert!(supported("postgresql://u@h/db"));
        assert!(!supported("sqlite://x.db"));
    }
}
