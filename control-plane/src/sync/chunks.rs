//! Cutting one logical `SyncUpdate` into messages of bounded size, so that Sync works at any
//! catalog size: a full snapshot of a large event can be many megabytes, more than gRPC peers
//! accept in one message (tonic's default is 4 MiB).
//!
//! Every chunk shares the update's version, nonce and catalog id; the header (full, base_version,
//! key_hash_secret, tokens, reset_object_cache, takes_usage_sums) travels on the first chunk only; the repeated
//! fields are spread in order — resources, events, attendees, forgotten objects, removals — and
//! every chunk but the last has `more` set. The edge applies (and ACKs) the update once the last
//! chunk arrives, so the order across chunks only has to keep each field's own order.

use aiproxy_proto::v1 as pb;
use prost::Message;
use prost::encoding::{encoded_len_varint, key_len};

/// The largest Sync message the control plane sends, encoded: a quarter of tonic's default
/// receive limit, and small enough that one message never holds a stream up for long.
pub const MAX_SYNC_MESSAGE_BYTES: usize = 1024 * 1024;

/// What `more: true` adds to a message: a one-byte key and a one-byte value.
const MORE_FLAG_BYTES: usize = 2;

/// Cuts `update` into chunks of at most `limit` encoded bytes each. An update that fits is
/// returned as it is (one chunk, `more` unset). A chunk exceeds `limit` only when one element (or
/// the header) alone does, which no catalog entry comes near.
pub fn split_update(mut update: pb::SyncUpdate, limit: usize) -> Vec<pb::SyncUpdate> {
    update.more = false;
    if update.encoded_len() <= limit {
        return vec![update];
    }
    let resources = std::mem::take(&mut update.resources);
    let events = std::mem::take(&mut update.events);
    let attendees = std::mem::take(&mut update.attendees);
    let forgotten = std::mem::take(&mut update.forgotten_objects);
    let removals = std::mem::take(&mut update.removals);

    let mut chunker = Chunker::new(update, limit);
    for item in resources {
        chunker.push(item, 5, |u| &mut u.resources);
    }
    for item in events {
        chunker.push(item, 6, |u| &mut u.events);
    }
    for item in attendees {
        chunker.push(item, 7, |u| &mut u.attendees);
    }
    for item in forgotten {
        chunker.push(item, 15, |u| &mut u.forgotten_objects);
    }
    for item in removals {
        chunker.push(item, 8, |u| &mut u.removals);
    }
    chunker.finish()
}

struct Chunker {
    limit: usize,
    /// What every chunk after the first starts as: the fields all chunks share.
    continuation: pb::SyncUpdate,
    done: Vec<pb::SyncUpdate>,
    current: pb::SyncUpdate,
    current_len: usize,
}

impl Chunker {
    fn new(header: pb::SyncUpdate, limit: usize) -> Self {
        let continuation = pb::SyncUpdate {
            version: header.version,
            nonce: header.nonce.clone(),
            catalog_id: header.catalog_id.clone(),
            ..Default::default()
        };
        Self {
            limit,
            continuation,
            done: Vec::new(),
            current_len: header.encoded_len(),
            current: header,
        }
    }

    /// Appends `item` (repeated field number `tag`, reached through `field`), starting a new chunk
    /// first when it would not fit in the current one (a new chunk takes it whatever its size).
    fn push<T: Message>(
        &mut self,
        item: T,
        tag: u32,
        field: fn(&mut pb::SyncUpdate) -> &mut Vec<T>,
    ) {
        let len = item.encoded_len();
        let cost = key_len(tag) + encoded_len_varint(len as u64) + len;
        if self.current_len + cost + MORE_FLAG_BYTES > self.limit {
            let next = self.continuation.clone();
            let mut full = std::mem::replace(&mut self.current, next);
            full.more = true;
            self.done.push(full);
            self.current_len = self.current.encoded_len();
        }
        field(&mut self.current).push(item);
        self.current_len += cost;
    }

    fn finish(mut self) -> Vec<pb::SyncUpdate> {
        self.done.push(self.current);
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attendee(i: usize) -> pb::EdgeAttendee {
        pb::EdgeAttendee {
            event_id: "event-1".into(),
            user_id: format!("user-{i:06}"),
            key_hash: vec![i as u8; 32],
            active: !i.is_multiple_of(3),
        }
    }

    fn resource(i: usize) -> pb::EdgeResource {
        pb::EdgeResource {
            info: Some(pb::ResourceInfo {
                id: format!("resource-{i}"),
                deployment_name: "gpt-4o".into(),
                ..Default::default()
            }),
            api_key: "sk-upstream".into(),
            token_scope: String::new(),
        }
    }

    fn big_update() -> pb::SyncUpdate {
        pb::SyncUpdate {
            version: 42,
            nonce: "nonce-1".into(),
            full: true,
            base_version: 0,
            catalog_id: "catalog-1".into(),
            key_hash_secret: vec![7; 32],
            tokens_included: true,
            tokens: vec![pb::ManagedIdentityToken {
                identity_client_id: String::new(),
                scope: "https://ai.azure.com/.default".into(),
                access_token: "token".into(),
                expires_on_ms: 1,
            }],
            reset_object_cache: true,
            takes_usage_sums: true,
            resources: (0..20).map(resource).collect(),
            events: (0..5)
                .map(|i| pb::EventInfo {
                    id: format!("event-{i}"),
                    ..Default::default()
                })
                .collect(),
            attendees: (0..500).map(attendee).collect(),
            removals: (0..30)
                .map(|i| pb::Removal {
                    kind: pb::ObjectKind::Attendee as i32,
                    id: format!("event-1/gone-{i}"),
                })
                .collect(),
            forgotten_objects: (0..40)
                .map(|i| pb::ObjectRef {
                    kind: "thread".into(),
                    id: format!("thread_{i}"),
                })
                .collect(),
            more: false,
        }
    }

    /// What an edge does: header from the first chunk, every repeated field concatenated.
    fn reassemble(chunks: &[pb::SyncUpdate]) -> pb::SyncUpdate {
        let mut whole = chunks[0].clone();
        for chunk in &chunks[1..] {
            whole.resources.extend(chunk.resources.iter().cloned());
            whole.events.extend(chunk.events.iter().cloned());
            whole.attendees.extend(chunk.attendees.iter().cloned());
            whole.removals.extend(chunk.removals.iter().cloned());
            whole
                .forgotten_objects
                .extend(chunk.forgotten_objects.iter().cloned());
        }
        whole.more = false;
        whole
    }

    #[test]
    fn an_update_that_fits_is_sent_as_it_is() {
        let update = pb::SyncUpdate {
            version: 3,
            nonce: "n".into(),
            attendees: (0..3).map(attendee).collect(),
            ..Default::default()
        };
        assert_eq!(split_update(update.clone(), 1024), vec![update]);
    }

    #[test]
    fn every_chunk_fits_and_the_chunks_reassemble_into_the_update() {
        let update = big_update();
        let limit = 2048;
        assert!(update.encoded_len() > 10 * limit);
        let chunks = split_update(update.clone(), limit);
        assert!(chunks.len() > 10, "{} chunks", chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            assert!(
                chunk.encoded_len() <= limit,
                "chunk {i} is {} bytes",
                chunk.encoded_len()
            );
            assert_eq!(chunk.more, i + 1 < chunks.len(), "chunk {i}");
            assert_eq!(
                (
                    chunk.version,
                    chunk.nonce.as_str(),
                    chunk.catalog_id.as_str()
                ),
                (42, "nonce-1", "catalog-1")
            );
        }
        assert_eq!(reassemble(&chunks), update);
    }

    #[test]
    fn the_header_is_on_the_first_chunk_only() {
        let chunks = split_update(big_update(), 2048);
        let first = &chunks[0];
        assert!(first.full && first.tokens_included && first.reset_object_cache);
        assert!(first.takes_usage_sums);
        assert_eq!(first.key_hash_secret.len(), 32);
        assert_eq!(first.tokens.len(), 1);
        for chunk in &chunks[1..] {
            assert!(!chunk.full && !chunk.tokens_included && !chunk.reset_object_cache);
            assert!(!chunk.takes_usage_sums);
            assert!(chunk.key_hash_secret.is_empty() && chunk.tokens.is_empty());
        }
    }

    #[test]
    fn referenced_entries_come_before_what_references_them_and_removals_last() {
        let chunks = split_update(big_update(), 2048);
        // Position of the chunk holding each field's first and last element.
        let span = |has: &dyn Fn(&pb::SyncUpdate) -> bool| {
            let positions: Vec<usize> = chunks
                .iter()
                .enumerate()
                .filter(|(_, c)| has(c))
                .map(|(i, _)| i)
                .collect();
            (positions[0], *positions.last().unwrap())
        };
        let resources = span(&|c| !c.resources.is_empty());
        let events = span(&|c| !c.events.is_empty());
        let attendees = span(&|c| !c.attendees.is_empty());
        let forgotten = span(&|c| !c.forgotten_objects.is_empty());
        let removals = span(&|c| !c.removals.is_empty());
        assert!(resources.1 <= events.0);
        assert!(events.1 <= attendees.0);
        assert!(attendees.1 <= forgotten.0);
        assert!(forgotten.1 <= removals.0);
        assert_eq!(removals.1, chunks.len() - 1);
    }

    #[test]
    fn an_element_larger_than_the_limit_travels_alone() {
        let mut update = big_update();
        update.resources[3].api_key = "k".repeat(5000);
        let chunks = split_update(update.clone(), 2048);
        let oversized: Vec<&pb::SyncUpdate> =
            chunks.iter().filter(|c| c.encoded_len() > 2048).collect();
        assert_eq!(oversized.len(), 1);
        assert_eq!(oversized[0].resources.len(), 1);
        assert_eq!(reassemble(&chunks), update);
    }
}
