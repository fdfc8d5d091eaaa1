//! The attendees an edge knows, held once and compactly: by key hash (what a request looks up),
//! with an index by (event, user) for removals and for a user whose key changed. An event id is
//! stored once per event (shared), a key hash inline. At 100,000 attendees this is a few tens of
//! bytes per attendee rather than the wire messages kept twice; and snapshots share it (`Arc`),
//! so a delta that touches no attendee copies nothing.

use std::sync::Arc;

use aiproxy_proto::v1 as pb;

use crate::maps::FastMap;

/// HMAC-SHA-256 of an attendee key.
pub type KeyHash = [u8; 32];

#[derive(Debug, Clone)]
pub struct AttendeeEntry {
    pub event_id: Arc<str>,
    pub user_id: Box<str>,
    pub active: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Attendees {
    by_key_hash: FastMap<KeyHash, AttendeeEntry>,
    /// event → user → key hash.
    by_user: FastMap<Arc<str>, FastMap<Box<str>, KeyHash>>,
}

impl Attendees {
    pub fn get(&self, key_hash: &[u8]) -> Option<&AttendeeEntry> {
        let key_hash: &KeyHash = key_hash.try_into().ok()?;
        self.by_key_hash.get(key_hash)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key_hash.len()
    }

    /// Adds or replaces an attendee. A new key hash for the same user retires the old one, and
    /// a key hash another user held is taken from them.
    pub fn upsert(&mut self, attendee: pb::EdgeAttendee) -> Result<(), String> {
        let hash: KeyHash = attendee.key_hash.as_slice().try_into().map_err(|_| {
            format!(
                "attendee {}: a key hash of {} bytes (32 expected)",
                attendee.user_id,
                attendee.key_hash.len()
            )
        })?;
        if let Some(previous) = self.by_key_hash.get(&hash)
            && (*previous.event_id != *attendee.event_id || *previous.user_id != *attendee.user_id)
        {
            let (event_id, user_id) = (previous.event_id.clone(), previous.user_id.clone());
            self.remove(&event_id, &user_id);
        }
        let event_id = match self.by_user.get_key_value(attendee.event_id.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(attendee.event_id.as_str()),
        };
        let user_id: Box<str> = attendee.user_id.into_boxed_str();
        let users = self.by_user.entry(event_id.clone()).or_default();
        if let Some(old) = users.insert(user_id.clone(), hash)
            && old != hash
        {
            self.by_key_hash.remove(&old);
        }
        self.by_key_hash.insert(
            hash,
            AttendeeEntry {
                event_id,
                user_id,
                active: attendee.active,
            },
        );
        Ok(())
    }

    pub fn remove(&mut self, event_id: &str, user_id: &str) {
        if let Some(users) = self.by_user.get_mut(event_id) {
            if let Some(hash) = users.remove(user_id) {
                self.by_key_hash.remove(&hash);
            }
            if users.is_empty() {
                self.by_user.remove(event_id);
            }
        }
    }

    /// Every attendee of the event.
    pub fn remove_event(&mut self, event_id: &str) {
        if let Some(users) = self.by_user.remove(event_id) {
            for hash in users.values() {
                self.by_key_hash.remove(hash);
            }
        }
    }

    /// As wire messages (for the state file's full update).
    pub fn to_proto(&self) -> Vec<pb::EdgeAttendee> {
        self.by_key_hash
            .iter()
            .map(|(hash, a)| pb::EdgeAttendee {
                event_id: a.event_id.to_string(),
                user_id: a.user_id.to_string(),
                key_hash: hash.to_vec(),
                active: a.active,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attendee(event: &str, user: &str, hash: u8, active: bool) -> pb::EdgeAttendee {
        pb::EdgeAttendee {
            event_id: event.into(),
            user_id: user.into(),
            key_hash: vec![hash; 32],
            active,
        }
    }

    #[test]
    fn keys_are_found_updated_replaced_and_removed() {
        let mut all = Attendees::default();
        all.upsert(attendee("e1", "ada", 1, true)).unwrap();
        all.upsert(attendee("e1", "bob", 2, true)).unwrap();
        all.upsert(attendee("e2", "ada", 3, true)).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(&*all.get(&[1; 32]).unwrap().user_id, "ada");
        // Deactivated in place.
        all.upsert(attendee("e1", "ada", 1, false)).unwrap();
        assert!(!all.get(&[1; 32]).unwrap().active);
        // A new key for the same user retires the old one.
        all.upsert(attendee("e1", "ada", 4, true)).unwrap();
        assert!(all.get(&[1; 32]).is_none());
        assert_eq!(all.len(), 3);
        // A key hash another user held is taken from them entirely.
        all.upsert(attendee("e1", "eve", 2, true)).unwrap();
        assert_eq!(&*all.get(&[2; 32]).unwrap().user_id, "eve");
        all.remove("e1", "bob");
        assert!(
            all.get(&[2; 32]).is_some(),
            "bob's removal leaves eve's key"
        );
        all.remove("e1", "eve");
        assert!(all.get(&[2; 32]).is_none());
        all.remove_event("e1");
        assert_eq!(all.len(), 1);
        assert_eq!(&*all.get(&[3; 32]).unwrap().event_id, "e2");
        assert!(
            all.get(&[3; 31]).is_none(),
            "a hash of another length is no key"
        );
        assert!(all.upsert(attendee("e1", "x", 1, true).clone()).is_ok());
        let mut short = attendee("e1", "y", 1, true);
        short.key_hash.truncate(8);
        assert!(all.upsert(short).is_err());
        assert_eq!(all.to_proto().len(), 2);
    }
}
