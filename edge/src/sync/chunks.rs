//! Reassembling chunked updates: the control plane cuts an update larger than one gRPC message
//! into chunks that share version and nonce, every one but the last marked `more`. The edge
//! applies (and ACKs or NACKs) the whole update only once its last chunk has arrived, so a
//! half-received update never replaces the current snapshot.

use aiproxy_proto::v1 as pb;

#[derive(Default)]
pub struct ChunkAssembler {
    pending: Option<pb::SyncUpdate>,
}

impl ChunkAssembler {
    /// The whole update once `chunk` completes one; `Err` when chunks of two updates interleave.
    pub fn push(&mut self, chunk: pb::SyncUpdate) -> Result<Option<pb::SyncUpdate>, String> {
        let whole = match self.pending.take() {
            None => chunk,
            Some(mut whole) => {
                if whole.nonce != chunk.nonce || whole.version != chunk.version {
                    return Err(format!(
                        "a chunk of update {} arrived before update {} was complete",
                        chunk.version, whole.version
                    ));
                }
                whole.resources.extend(chunk.resources);
                whole.events.extend(chunk.events);
                whole.attendees.extend(chunk.attendees);
                whole.removals.extend(chunk.removals);
                whole.forgotten_objects.extend(chunk.forgotten_objects);
                whole.more = chunk.more;
                whole
            }
        };
        if whole.more {
            self.pending = Some(whole);
            return Ok(None);
        }
        Ok(Some(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(nonce: &str, attendee: &str, more: bool) -> pb::SyncUpdate {
        pb::SyncUpdate {
            version: 7,
            nonce: nonce.into(),
            more,
            attendees: vec![pb::EdgeAttendee {
                user_id: attendee.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn chunks_make_one_update_and_interleaving_is_refused() {
        let mut assembler = ChunkAssembler::default();
        assert!(assembler.push(chunk("n", "a", true)).unwrap().is_none());
        assert!(assembler.push(chunk("n", "b", true)).unwrap().is_none());
        let whole = assembler.push(chunk("n", "c", false)).unwrap().unwrap();
        let users: Vec<_> = whole.attendees.iter().map(|a| a.user_id.as_str()).collect();
        assert_eq!(users, ["a", "b", "c"]);
        assert!(!whole.more);

        assert!(assembler.push(chunk("n1", "a", true)).unwrap().is_none());
        assert!(assembler.push(chunk("n2", "b", false)).is_err());
    }
}
