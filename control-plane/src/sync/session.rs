//! One `EdgeService.Sync` stream. The edge says Hello with the catalog it holds; the session
//! answers at once (full snapshot, or the delta since that version), then pushes every later
//! catalog change, token change and forget invalidation, and records the edge's ACK/NACK. A NACK
//! makes the next update a full snapshot, sent after a back-off that doubles with every NACK in a
//! row (1 s up to 60 s) and starts over after an ACK: an update the edge cannot apply must not cost
//! a full snapshot a second forever. Each update leaves as one or more chunks of bounded size
//! (`chunks`), all of them before anything else.
//!
//! Ownership records are not in the snapshot: edges cache the ones they looked up. A session cannot
//! know which forgets its edge missed while it was away, so its first update tells the edge to drop
//! that cache (`reset_object_cache`); afterwards it forwards every forget (`forgotten_objects`),
//! or another reset when the forget log no longer reaches back to where the session was. A forget
//! alone changes no catalog version: its update has `version == base_version`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use aiproxy_proto::v1 as pb;
use pb::edge_message::Message;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::chunks::split_update;
use super::convert;
use super::edges::EdgeSession;
use super::shared_changes::SharedChanges;
use crate::catalog::model::CatalogChanges;
use crate::catalog::service::{CATALOG_UNAVAILABLE, Catalog};
use crate::tokens::TokenBroker;

/// Wait after the first NACK in a row before the full snapshot goes out.
const FIRST_NACK_DELAY: Duration = Duration::from_secs(1);
/// Longest wait, however many NACKs in a row.
const MAX_NACK_DELAY: Duration = Duration::from_secs(60);

/// The wait after a NACK, given the one after the previous NACK (zero: none since the last ACK).
fn next_nack_delay(previous: Duration) -> Duration {
    if previous.is_zero() {
        FIRST_NACK_DELAY
    } else {
        (previous * 2).min(MAX_NACK_DELAY)
    }
}

pub(super) struct SyncSession {
    pub(super) catalog: Arc<Catalog>,
    /// Catalog reads shared with the other streams (see `shared_changes`).
    pub(super) changes: Arc<SharedChanges>,
    pub(super) tokens: Arc<TokenBroker>,
    pub(super) edge: EdgeSession,
    pub(super) edge_id: String,
    pub(super) outbound: mpsc::Sender<Result<pb::SyncUpdate, Status>>,
    pub(super) max_message_bytes: usize,
}

/// What the next update must carry even without catalog changes.
#[derive(Default)]
struct Owed {
    /// The Hello is answered at once, even with nothing new.
    answer: bool,
    tokens: bool,
    reset_objects: bool,
}

impl SyncSession {
    pub(super) async fn run(self, hello: pb::Hello, mut inbound: Streaming<pb::EdgeMessage>) {
        let edge_id = self.edge_id.clone();
        tracing::info!(edge = %edge_id, region = %hello.region, held = hello.version, "edge connected");
        if !hello.last_error.is_empty() {
            tracing::warn!(edge = %edge_id, error = %hello.last_error, "the edge's previous Sync stream failed");
        }
        let feed = self.catalog.change_feed().clone();
        let mut changes_rx = feed.subscribe();
        let mut forgets_rx = feed.subscribe_forgets();
        forgets_rx.borrow_and_update();
        let mut tokens_rx = self.tokens.subscribe();
        tokens_rx.borrow_and_update();
        let store = self.catalog.store().clone();

        // The forget number is read before the first update: forgets after it are forwarded, the
        // ones before are covered by that update's cache reset.
        let (catalog_id, mut forget_seq) = match tokio::try_join!(
            store.catalog_id(),
            store.current_forget_seq()
        ) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(edge = %edge_id, error = %e, "could not read the catalog for a new Sync stream");
                let _ = self
                    .outbound
                    .send(Err(Status::unavailable(CATALOG_UNAVAILABLE)))
                    .await;
                return;
            }
        };
        // Nothing held, or a version of another catalog, means the edge needs everything.
        let mut held = (!hello.catalog_id.is_empty() && hello.catalog_id == catalog_id)
            .then_some(hello.version);
        let mut owed = Owed {
            answer: true,
            tokens: false,
            reset_objects: true,
        };
        let mut forgets_due = false;
        // After a NACK nothing is sent before `quiet_until`; `nack_delay` is the last wait taken.
        let mut nack_delay = Duration::ZERO;
        let mut quiet_until: Option<Instant> = None;
        let mut last_sent: Option<u64> = None;
        // The last update sent and not yet ACKed: its version, when it left, and whether full.
        let mut awaiting_ack: Option<(u64, Instant, bool)> = None;
        let acked = |version: u64, awaiting: &mut Option<(u64, Instant, bool)>| {
            if let Some((sent, at, full)) = *awaiting
                && sent == version
            {
                crate::metrics::metrics().pushed(full, at.elapsed());
                *awaiting = None;
            }
        };
        loop {
            if let Some(until) = quiet_until {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => quiet_until = None,
                    message = inbound.message() => match message {
                        Ok(Some(pb::EdgeMessage { message: Some(Message::Ack(ack)) })) => {
                            self.edge.acked(ack.version);
                            acked(ack.version, &mut awaiting_ack);
                        }
                        Ok(Some(pb::EdgeMessage { message: Some(Message::Nack(nack)) })) => {
                            self.edge.nacked(&nack.error);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    },
                    _ = self.outbound.closed() => break,
                }
                continue;
            }
            forgets_due |= *forgets_rx.borrow_and_update() > forget_seq;
            let at_least = *changes_rx.borrow_and_update();
            let changes = match self.changes.since(held, at_least).await {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!(edge = %edge_id, error = %e, "could not read catalog changes; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut forgotten = Vec::new();
            if forgets_due {
                match store.forgets_since(forget_seq).await {
                    Ok(forgets) => {
                        if forgets.complete {
                            forgotten = forgets.objects;
                        } else {
                            tracing::info!(edge = %edge_id, since = forget_seq, "forget invalidations were pruned; the edge drops its ownership cache");
                            owed.reset_objects = true;
                        }
                        forget_seq = forgets.seq;
                        forgets_due = false;
                    }
                    Err(e) => {
                        tracing::warn!(edge = %edge_id, error = %e, "could not read forgotten objects; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            if owed.answer
                || owed.tokens
                || owed.reset_objects
                || changes.full
                || !changes.is_empty()
                || !forgotten.is_empty()
            {
                let update = self.build_update(
                    held.unwrap_or(0),
                    &changes,
                    &catalog_id,
                    forgotten,
                    owed.reset_objects,
                );
                let version = update.version;
                let full = update.full;
                let leaving = Instant::now();
                if !self.send(update).await {
                    break;
                }
                self.edge.sent(version);
                awaiting_ack = Some((version, leaving, full));
                held = Some(version);
                last_sent = Some(version);
                owed = Owed::default();
            }
            tokio::select! {
                changed = changes_rx.changed() => if changed.is_err() { break },
                changed = forgets_rx.changed() => if changed.is_err() { break },
                changed = tokens_rx.changed() => match changed {
                    Ok(()) => owed.tokens = true,
                    Err(_) => break,
                },
                message = inbound.message() => match message {
                    Ok(Some(pb::EdgeMessage { message: Some(Message::Ack(ack)) })) => {
                        self.edge.acked(ack.version);
                        acked(ack.version, &mut awaiting_ack);
                        if last_sent == Some(ack.version) {
                            nack_delay = Duration::ZERO;
                        }
                    }
                    Ok(Some(pb::EdgeMessage { message: Some(Message::Nack(nack)) })) => {
                        nack_delay = next_nack_delay(nack_delay);
                        tracing::warn!(edge = %edge_id, version = nack.version, error = %nack.error, retry_in_ms = nack_delay.as_millis() as u64, "edge rejected an update; a full snapshot follows");
                        self.edge.nacked(&nack.error);
                        held = None;
                        // The rejected update may have carried forgets the edge did not apply.
                        owed.reset_objects = true;
                        quiet_until = Some(Instant::now() + nack_delay);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                },
                _ = self.outbound.closed() => break,
            }
        }
        tracing::info!(edge = %edge_id, "edge disconnected");
    }

    /// Sends every chunk of `update`, in order; false once the edge has gone.
    async fn send(&self, update: pb::SyncUpdate) -> bool {
        for chunk in split_update(update, self.max_message_bytes) {
            if self.outbound.send(Ok(chunk)).await.is_err() {
                return false;
            }
        }
        true
    }

    fn build_update(
        &self,
        base: u64,
        changes: &CatalogChanges,
        catalog_id: &str,
        forgotten: Vec<(String, String)>,
        reset_object_cache: bool,
    ) -> pb::SyncUpdate {
        let cipher = self.catalog.cipher();
        pb::SyncUpdate {
            version: changes.version,
            nonce: uuid::Uuid::new_v4().to_string(),
            full: changes.full,
            base_version: if changes.full { 0 } else { base },
            catalog_id: catalog_id.to_string(),
            resources: changes
                .resources
                .iter()
                .map(|r| convert::edge_resource(r, cipher))
                .collect(),
            events: changes.events.iter().map(convert::event_info).collect(),
            attendees: changes
                .attendees
                .iter()
                .map(convert::edge_attendee)
                .collect(),
            removals: changes.removals.iter().map(convert::removal).collect(),
            // Every update carries the whole (small) token set, so a token never waits for a catalog change.
            tokens_included: true,
            tokens: self.tokens.edge_tokens(),
            key_hash_secret: if changes.full {
                self.catalog.key_hasher().secret().to_vec()
            } else {
                Vec::new()
            },
            more: false,
            takes_usage_sums: true,
            forgotten_objects: forgotten
                .into_iter()
                .map(|(kind, id)| pb::ObjectRef { kind, id })
                .collect(),
            reset_object_cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_delays_double_from_one_second_to_a_minute() {
        let mut delay = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..9 {
            delay = next_nack_delay(delay);
            seen.push(delay.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
