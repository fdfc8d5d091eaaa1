//! Getting usage records to the control plane: nothing lost, nothing counted twice.
//!
//! The control plane keeps usage as hourly sums per (event, attendee, resource, deployment), so
//! that is what the edge sends: each request is added to its key's sum in the open batch, and a
//! batch carries one entry per key however many requests it counts (the control plane's work per
//! batch, and the batches' size, follow the attendees active, not the request rate). Requests
//! whose tokens carry a once key (a run's, a stored response's: counted once per key) go as
//! records, encoded when they are taken. Entries collect in memory and are sealed into batches
//! (at most `batch_records` entries each) at least every `flush_interval`, or at once when that
//! many are waiting. A sealed batch has an id and never changes: it is sent, and sent again with
//! the same id until the control plane acknowledges it, which applies each id once. With
//! `AIPROXY_EDGE_STATE_DIR` set, a batch whose send fails (and, at shutdown, any not yet
//! acknowledged) is written to `<dir>/usage/` and deleted when acknowledged, so a restart (or a
//! crash during an outage) delivers it later; on the happy path, which is the request path's
//! core, nothing touches the disk. While the control plane is unreachable, entries wait, up to
//! `buffer_records`; past that, a request that would need a new entry is dropped, counted
//! (`/readyz`) and logged. On shutdown the edge seals and sends what it holds before it exits.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aiproxy_proto::EncodedUsageBatch;
use aiproxy_proto::v1 as pb;
use bytes::Bytes;
use prost::Message;
use tokio::sync::Notify;

use crate::control_calls::ControlPlaneCalls;
use crate::maps::FastMap;

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub flush_interval: Duration,
    /// The most entries (sums and records) one batch holds.
    pub batch_records: usize,
    /// The most entries waiting, in all batches, while the control plane does not take them.
    pub buffer_records: usize,
    /// The most of one answer kept to find its usage (`AIPROXY_USAGE_SCAN_BYTES`).
    pub scan_bytes: usize,
}

/// How delivery is going, for `/readyz`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeliveryStatus {
    /// Requests whose usage the control plane has not acknowledged yet.
    pub pending_records: usize,
    /// The entries (sums and records) they are in: what `buffer_records` bounds.
    pub pending_entries: usize,
    /// Requests whose usage was dropped because the buffer was full (since the edge started).
    pub dropped_records: u64,
    pub delivered_batches: u64,
    /// Records in batches the control plane refused as invalid (set aside, on disk as
    /// `<id>.refused` when a state folder is set).
    pub refused_records: u64,
    /// Why the last send failed; cleared by the next success.
    pub last_error: Option<String>,
}

struct Sealed {
    id: String,
    /// Requests counted.
    records: usize,
    /// Sums and records it carries.
    entries: usize,
    /// The `pb::UsageBatch`, encoded: what is sent, and what is written to disk.
    encoded: Bytes,
    /// Where the batch waits on disk, if it does.
    file: Option<PathBuf>,
}

#[derive(Default)]
struct Buffer {
    /// The batch records are added to.
    open: Open,
    /// Batches that reached `batch_records`, not yet sealed.
    full: Vec<Open>,
    sealed: VecDeque<Sealed>,
    status: DeliveryStatus,
}

/// A batch being filled: its records, encoded as its `records` field (`pb::UsageBatch` field 3),
/// and its sums, encoded with the batch's ids when it is sealed (a protobuf message's fields may
/// come in any order).
#[derive(Default)]
struct Open {
    encoded: Vec<u8>,
    sums: Vec<pb::UsageSum>,
    /// Where each key's sum is in `sums`, by the key's hash.
    by_key: FastMap<u64, usize>,
    /// Requests counted, summed or as records.
    records: usize,
    /// Sums and records.
    entries: usize,
}

impl Open {
    /// This batch, leaving an empty one sized like it (the next batch is likely as large: no
    /// regrowing on the request path).
    fn take(&mut self) -> Open {
        let next = Open {
            encoded: Vec::with_capacity(self.encoded.len()),
            sums: Vec::with_capacity(self.sums.len()),
            by_key: FastMap::with_capacity_and_hasher(self.by_key.len(), Default::default()),
            records: 0,
            entries: 0,
        };
        std::mem::replace(self, next)
    }

    /// Whether `record`, summed under `sum_key`, would be added to a sum this batch has (taking
    /// no new entry).
    fn sums_into_existing(&self, sum_key: Option<u64>, record: &pb::UsageRecord) -> bool {
        sum_key
            .and_then(|key_hash| self.by_key.get(&key_hash))
            .is_some_and(|&at| same_key(&self.sums[at], record, hour_of(record.started_at_ms)))
    }

    /// With a `sum_key` (the hash of its key), adds `record` to its key's sum, or starts one;
    /// a record without one, or whose key's hash is another key's, is encoded as a record.
    /// Whether it took a new entry.
    fn add(&mut self, sum_key: Option<u64>, record: pb::UsageRecord) -> bool {
        self.records += 1;
        if let Some(key_hash) = sum_key {
            let hour_ms = hour_of(record.started_at_ms);
            match self.by_key.entry(key_hash) {
                Entry::Occupied(at) => {
                    let sum = &mut self.sums[*at.get()];
                    if same_key(sum, &record, hour_ms) {
                        add_to(sum, &record);
                        return false;
                    }
                }
                Entry::Vacant(at) => {
                    at.insert(self.sums.len());
                    let mut sum = pb::UsageSum {
                        hour_ms,
                        ..Default::default()
                    };
                    add_to(&mut sum, &record);
                    sum.event_id = record.event_id;
                    sum.user_id = record.user_id;
                    sum.resource_id = record.resource_id;
                    sum.deployment_name = record.deployment_name;
                    self.sums.push(sum);
                    self.entries += 1;
                    return true;
                }
            }
        }
        prost::encoding::message::encode(RECORDS_FIELD, &record, &mut self.encoded);
        self.entries += 1;
        true
    }
}

const HOUR_MS: i64 = 3_600_000;

/// The start of the UTC hour of `ms`.
fn hour_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

fn same_key(sum: &pb::UsageSum, r: &pb::UsageRecord, hour_ms: i64) -> bool {
    sum.hour_ms == hour_ms
        && sum.event_id == r.event_id
        && sum.user_id == r.user_id
        && sum.resource_id == r.resource_id
        && sum.deployment_name == r.deployment_name
}

/// What the control plane keeps of a record, added to its sum.
fn add_to(sum: &mut pb::UsageSum, r: &pb::UsageRecord) {
    sum.requests += 1;
    sum.errors += u64::from(r.status >= 400);
    sum.streamed += u64::from(r.streamed);
    sum.usage_unknown += u64::from(r.usage_unknown);
    for (total, tokens) in [
        (&mut sum.prompt_tokens, r.prompt_tokens),
        (&mut sum.completion_tokens, r.completion_tokens),
        (&mut sum.total_tokens, r.total_tokens),
        (&mut sum.cached_tokens, r.cached_tokens),
        (&mut sum.reasoning_tokens, r.reasoning_tokens),
    ] {
        *total = total.saturating_add(tokens);
    }
    sum.duration_ms += u64::from(r.duration_ms);
    sum.ttfb_ms += u64::from(r.ttfb_ms);
}

/// `pb::UsageBatch`'s field numbers.
const BATCH_ID_FIELD: u32 = 1;
const EDGE_ID_FIELD: u32 = 2;
const RECORDS_FIELD: u32 = 3;
const SUMS_FIELD: u32 = 4;

pub struct UsageDelivery {
    edge_id: String,
    pub settings: DeliverySettings,
    buffer: Mutex<Buffer>,
    wake: Notify,
    /// One sender at a time (the background loop, or the shutdown flush).
    sending: tokio::sync::Mutex<()>,
    spill: Option<PathBuf>,
    /// Batches sealed by this process: orders batch ids sealed in the same millisecond.
    sealed_count: AtomicU64,
    /// Hashes the keys requests are summed by.
    keys: foldhash::fast::RandomState,
    /// The control plane applies sums (it says so on every Sync update); until one says so, every
    /// request goes as a record, which any control plane applies.
    summing: AtomicBool,
}

impl UsageDelivery {
    /// With `state_dir`, batches left on disk by an earlier run are taken up first.
    pub fn new(edge_id: &str, settings: DeliverySettings, state_dir: Option<&Path>) -> Self {
        let spill = state_dir.map(|dir| dir.join("usage"));
        let mut buffer = Buffer::default();
        if let Some(dir) = &spill {
            match load_spilled(dir) {
                Ok(found) if !found.is_empty() => {
                    let records: usize = found.iter().map(|s| s.records).sum();
                    tracing::info!(
                        batches = found.len(),
                        records,
                        "usage batches left on disk will be delivered"
                    );
                    buffer.status.pending_records = records;
                    buffer.status.pending_entries = found.iter().map(|s| s.entries).sum();
                    buffer.sealed.extend(found);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the usage spill folder")
                }
            }
        }
        Self {
            edge_id: edge_id.to_string(),
            settings,
            buffer: Mutex::new(buffer),
            wake: Notify::new(),
            sending: tokio::sync::Mutex::new(()),
            spill,
            sealed_count: AtomicU64::new(0),
            keys: Default::default(),
            summing: AtomicBool::new(false),
        }
    }

    /// Whether the control plane takes sums (`SyncUpdate.takes_usage_sums`); from the next
    /// request on, usage is summed or sent as records accordingly.
    pub fn sum_for(&self, control_plane_takes_sums: bool) {
        self.summing
            .store(control_plane_takes_sums, Ordering::Relaxed);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Buffer) -> R) -> R {
        f(&mut self.buffer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes one request's record (never blocks; drops and counts it when it needs a new entry
    /// and the buffer is full).
    pub fn push(&self, record: pb::UsageRecord) {
        // Summed unless the control plane does not take sums or its tokens count once per key.
        let summed = self.summing.load(Ordering::Relaxed) && record.once_key.is_empty();
        let sum_key = summed.then(|| {
            self.keys.hash_one((
                &record.event_id,
                &record.user_id,
                &record.resource_id,
                &record.deployment_name,
                hour_of(record.started_at_ms),
            ))
        });
        let (dropped, full_batch) = self.with(|b| {
            let full_buffer = b.status.pending_entries >= self.settings.buffer_records;
            if full_buffer && !b.open.sums_into_existing(sum_key, &record) {
                b.status.dropped_records += 1;
                return (Some(b.status.dropped_records), false);
            }
            if b.open.add(sum_key, record) {
                b.status.pending_entries += 1;
            }
            b.status.pending_records += 1;
            let full = b.open.entries >= self.settings.batch_records;
            if full {
                let done = b.open.take();
                b.full.push(done);
            }
            (None, full)
        });
        if let Some(count) = dropped {
            // The first drop, then one line per thousand.
            if count == 1 || count.is_multiple_of(1000) {
                tracing::error!(
                    dropped = count,
                    bound = self.settings.buffer_records,
                    "usage records dropped: the buffer is full (the control plane has been unreachable for long)"
                );
            }
        }
        if full_batch {
            self.wake.notify_one();
        }
    }

    pub fn status(&self) -> DeliveryStatus {
        self.with(|b| b.status.clone())
    }

    /// Seals the full batches and the open one: each gets its id and this edge's.
    fn seal(&self) {
        let batches = self.with(|b| {
            let mut batches = std::mem::take(&mut b.full);
            if b.open.records > 0 {
                batches.push(b.open.take());
            }
            batches
        });
        if batches.is_empty() {
            return;
        }
        let sealed: Vec<Sealed> = batches
            .into_iter()
            .map(
                |Open {
                     mut encoded,
                     sums,
                     records,
                     entries,
                     ..
                 }| {
                    for sum in &sums {
                        prost::encoding::message::encode(SUMS_FIELD, sum, &mut encoded);
                    }
                    let id = format!(
                        "{:013}-{:010}-{}",
                        chrono::Utc::now().timestamp_millis(),
                        self.sealed_count.fetch_add(1, Ordering::Relaxed),
                        uuid::Uuid::new_v4().simple()
                    );
                    prost::encoding::string::encode(BATCH_ID_FIELD, &id, &mut encoded);
                    prost::encoding::string::encode(EDGE_ID_FIELD, &self.edge_id, &mut encoded);
                    Sealed {
                        id,
                        records,
                        entries,
                        encoded: Bytes::from(encoded),
                        file: None,
                    }
                },
            )
            .collect();
        self.with(|b| b.sealed.extend(sealed));
    }

    /// Writes every sealed batch not yet on disk to the state folder (when one is set): done
    /// when a send fails, and at shutdown.
    fn spill_waiting(&self) {
        let Some(dir) = &self.spill else { return };
        let waiting: Vec<(String, Bytes)> = self.with(|b| {
            b.sealed
                .iter()
                .filter(|s| s.file.is_none())
                .map(|s| (s.id.clone(), s.encoded.clone()))
                .collect()
        });
        for (id, encoded) in waiting {
            match spill(dir, &id, &encoded, "pb") {
                Ok(file) => self.with(|b| {
                    if let Some(s) = b.sealed.iter_mut().find(|s| s.id == id) {
                        s.file = Some(file);
                    } else {
                        // Acknowledged meanwhile.
                        let _ = std::fs::remove_file(&file);
                    }
                }),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not write a usage batch to disk; it is kept in memory only");
                }
            }
        }
    }

    /// Sends the sealed batches in order until all are acknowledged or one fails (then those
    /// waiting go to disk).
    async fn send_sealed(&self, control: &ControlPlaneCalls) -> Result<(), String> {
        let _one_sender = self.sending.lock().await;
        loop {
            let Some((id, records, entries, encoded)) = self.with(|b| {
                b.sealed
                    .front()
                    .map(|s| (s.id.clone(), s.records, s.entries, s.encoded.clone()))
            }) else {
                return Ok(());
            };
            match control.report_usage(EncodedUsageBatch(encoded)).await {
                Ok(duplicate) => {
                    if duplicate {
                        tracing::debug!(batch = %id, "usage batch had been delivered before");
                    }
                    let done = self.with(|b| {
                        let done = b.sealed.pop_front();
                        b.status.pending_records = b.status.pending_records.saturating_sub(records);
                        b.status.pending_entries = b.status.pending_entries.saturating_sub(entries);
                        b.status.delivered_batches += 1;
                        b.status.last_error = None;
                        done
                    });
                    if let Some(file) = done.and_then(|s| s.file)
                        && let Err(e) = std::fs::remove_file(&file)
                    {
                        tracing::warn!(file = %file.display(), error = %e, "could not delete a delivered usage batch (it would be sent again, and ignored)");
                    }
                }
                Err(status) if status.code() == tonic::Code::InvalidArgument => {
                    // Sending it again cannot help, and it would hold up every batch behind it.
                    tracing::error!(batch = %id, records, error = %status.message(), "the control plane refused a usage batch; it is set aside");
                    let refused = self.with(|b| {
                        b.status.pending_records = b.status.pending_records.saturating_sub(records);
                        b.status.pending_entries = b.status.pending_entries.saturating_sub(entries);
                        b.status.refused_records += records as u64;
                        b.sealed.pop_front()
                    });
                    match (refused, &self.spill) {
                        (
                            Some(Sealed {
                                file: Some(file), ..
                            }),
                            _,
                        ) => {
                            let _ = std::fs::rename(&file, file.with_extension("refused"));
                        }
                        (Some(sealed), Some(dir)) => {
                            let _ = spill(dir, &sealed.id, &sealed.encoded, "refused");
                        }
                        _ => {}
                    }
                }
                Err(status) => {
                    let error = format!("{}: {}", status.code(), status.message());
                    self.with(|b| b.status.last_error = Some(error.clone()));
                    self.spill_waiting();
                    return Err(error);
                }
            }
        }
    }

    /// Delivers in the background for as long as the edge runs.
    pub async fn run(&self, control: &ControlPlaneCalls) {
        const MAX_BACKOFF: Duration = Duration::from_secs(30);
        let mut backoff = self.settings.flush_interval;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.flush_interval) => {}
                _ = self.wake.notified() => {}
            }
            self.seal();
            match self.send_sealed(control).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("usage delivery resumed");
                    }
                    failing = false;
                    backoff = self.settings.flush_interval;
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(%error, pending = self.status().pending_records, "usage records wait: the control plane did not take them");
                    }
                    failing = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// On shutdown: seals and sends everything, trying until `deadline` passes. Returns the
    /// records still undelivered (on disk when a state folder is set; lost otherwise).
    pub async fn flush(&self, control: &ControlPlaneCalls, deadline: Duration) -> usize {
        self.seal();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let sent = tokio::time::timeout_at(until, self.send_sealed(control)).await;
            match sent {
                Ok(Ok(())) => return 0,
                Ok(Err(_)) if tokio::time::Instant::now() + Duration::from_millis(500) < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                _ => {
                    self.spill_waiting();
                    let left = self.status().pending_records;
                    if self.spill.is_some() {
                        tracing::warn!(
                            records = left,
                            "usage records not delivered before exit: they stay on disk and are sent at the next start"
                        );
                    } else {
                        tracing::error!(
                            records = left,
                            "usage records not delivered before exit are lost (set AIPROXY_EDGE_STATE_DIR to keep them)"
                        );
                    }
                    return left;
                }
            }
        }
    }
}

/// Writes one encoded batch as `<dir>/<id>.<extension>` (whole or not at all).
fn spill(dir: &Path, id: &str, encoded: &[u8], extension: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!("{id}.{extension}"));
    let partial = dir.join(format!("{id}.partial"));
    std::fs::write(&partial, encoded)?;
    std::fs::rename(&partial, &file)?;
    Ok(file)
}

/// Batches left by an earlier run, oldest first (ids start with their sealing time).
fn load_spilled(dir: &Path) -> std::io::Result<Vec<Sealed>> {
    let mut files = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "pb") {
                    files.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let read = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let batch = pb::UsageBatch::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
                Ok((batch, bytes))
            });
        match read {
            Ok((batch, bytes)) => found.push(Sealed {
                id: batch.batch_id,
                records: batch.records.len()
                    + batch
                        .sums
                        .iter()
                        .map(|s| usize::try_from(s.requests).unwrap_or(usize::MAX))
                        .fold(0, usize::saturating_add),
                entries: batch.records.len() + batch.sums.len(),
                encoded: Bytes::from(bytes),
                file: Some(file),
            }),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "unreadable usage batch set aside");
                let _ = std::fs::rename(&file, file.with_extension("bad"));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(buffer: usize) -> DeliverySettings {
        DeliverySettings {
            flush_interval: Duration::from_millis(10),
            batch_records: 2,
            buffer_records: buffer,
            scan_bytes: 1024,
        }
    }

    /// Attendee `n`'s request at 10:00 UTC, with `n` tokens.
    fn record(n: u64) -> pb::UsageRecord {
        pb::UsageRecord {
            event_id: "e".into(),
            user_id: format!("attendee {n}"),
            started_at_ms: HOUR_10,
            total_tokens: n,
            ..Default::default()
        }
    }

    /// 2026-03-29T10:00:00Z.
    const HOUR_10: i64 = 1_774_778_400_000;

    fn sealed(delivery: &UsageDelivery) -> Vec<(String, pb::UsageBatch)> {
        delivery.with(|b| {
            b.sealed
                .iter()
                .map(|s| {
                    (
                        s.id.clone(),
                        pb::UsageBatch::decode(s.encoded.as_ref()).unwrap(),
                    )
                })
                .collect()
        })
    }

    /// Requests of one (event, attendee, resource, deployment, hour) go as one sum of what the
    /// control plane keeps of them; those with a once key go as records; every batch has its id
    /// and the edge's, and at most `batch_records` entries.
    #[test]
    fn requests_are_summed_per_key_and_once_keys_sent_as_records() {
        let three = DeliverySettings {
            batch_records: 3,
            ..settings(100)
        };
        let delivery = UsageDelivery::new("edge-7", three, None);
        delivery.sum_for(true);
        let a = |minute: i64, status: u32, tokens: u64| pb::UsageRecord {
            started_at_ms: HOUR_10 + minute * 60_000,
            status,
            duration_ms: 100,
            ttfb_ms: 7,
            streamed: status == 200,
            prompt_tokens: 1,
            ..record(tokens)
        };
        let run = pb::UsageRecord {
            once_key: "r1:run:1".into(),
            ..a(2, 200, 40)
        };
        // Attendee 5 four times in the hour (one of them a run), once in the next; attendee 6
        // once; another deployment of attendee 5's once.
        for r in [
            a(0, 200, 5),
            a(10, 429, 5),
            run.clone(),
            a(59, 200, 5),
            a(60, 200, 5),
            record(6),
            pb::UsageRecord {
                deployment_name: "other".into(),
                ..a(1, 200, 5)
            },
        ] {
            delivery.push(r);
        }
        let status = delivery.status();
        assert_eq!((status.pending_records, status.pending_entries), (7, 5));
        delivery.seal();
        let batches = sealed(&delivery);
        assert_eq!(batches.len(), 2, "5 entries, at most 3 per batch");
        let ids: std::collections::HashSet<&String> = batches.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 2, "every batch has its own id");
        for (id, batch) in &batches {
            assert_eq!(&batch.batch_id, id);
            assert_eq!(batch.edge_id, "edge-7");
            assert!(batch.records.len() + batch.sums.len() <= 3);
        }
        let records: Vec<pb::UsageRecord> = batches
            .iter()
            .flat_map(|(_, b)| b.records.clone())
            .collect();
        assert_eq!(records, [run]);
        let sums: Vec<pb::UsageSum> = batches.into_iter().flat_map(|(_, b)| b.sums).collect();
        let hour_10 = |user: &str, deployment: &str| {
            sums.iter()
                .find(|s| {
                    s.user_id == user && s.deployment_name == deployment && s.hour_ms == HOUR_10
                })
                .cloned()
                .unwrap_or_else(|| panic!("no sum for {user} {deployment}: {sums:?}"))
        };
        assert_eq!(
            hour_10("attendee 5", ""),
            pb::UsageSum {
                event_id: "e".into(),
                user_id: "attendee 5".into(),
                hour_ms: HOUR_10,
                requests: 3,
                errors: 1,
                streamed: 2,
                prompt_tokens: 3,
                total_tokens: 15,
                duration_ms: 300,
                ttfb_ms: 21,
                ..Default::default()
            }
        );
        assert_eq!(hour_10("attendee 5", "other").requests, 1);
        assert_eq!(hour_10("attendee 6", "").total_tokens, 6);
        let next_hour: Vec<_> = sums
            .iter()
            .filter(|s| s.hour_ms == HOUR_10 + HOUR_MS)
            .collect();
        assert_eq!(next_hour.len(), 1);
        assert_eq!(next_hour[0].requests, 1);
        assert_eq!(sums.len(), 4);
    }

    /// An older control plane would ignore sums: until one says it takes them, every request
    /// goes as a record (and again after one that does not).
    #[test]
    fn requests_go_as_records_until_the_control_plane_takes_sums() {
        let one_batch = DeliverySettings {
            batch_records: 100,
            ..settings(100)
        };
        let delivery = UsageDelivery::new("edge", one_batch, None);
        let decoded = |delivery: &UsageDelivery| {
            delivery.seal();
            let batch = sealed(delivery).pop().unwrap().1;
            (
                batch.records.len(),
                batch.sums.iter().map(|s| s.requests).collect::<Vec<_>>(),
            )
        };
        for _ in 0..3 {
            delivery.push(record(1));
        }
        assert_eq!(decoded(&delivery), (3, vec![]));
        delivery.sum_for(true);
        for _ in 0..3 {
            delivery.push(record(1));
        }
        assert_eq!(decoded(&delivery), (0, vec![3]));
        delivery.sum_for(false);
        delivery.push(record(1));
        assert_eq!(decoded(&delivery), (1, vec![]));
    }

    /// The buffer bounds entries: past it a request that needs a new one is dropped and counted,
    /// one that adds to a sum waiting in the open batch is not.
    #[test]
    fn a_full_buffer_drops_and_counts_only_what_needs_a_new_entry() {
        let delivery = UsageDelivery::new("edge", settings(3), None);
        delivery.sum_for(true);
        for n in 0..5 {
            delivery.push(record(n));
        }
        let status = delivery.status();
        assert_eq!(
            (
                status.pending_entries,
                status.pending_records,
                status.dropped_records
            ),
            (3, 3, 2)
        );
        delivery.push(record(2));
        let status = delivery.status();
        assert_eq!(
            (
                status.pending_entries,
                status.pending_records,
                status.dropped_records
            ),
            (3, 4, 2),
            "attendee 2's sum is open: summed, not dropped"
        );
        delivery.push(record(0));
        assert_eq!(
            delivery.status().dropped_records,
            3,
            "attendee 0's sum was sealed with a full batch: a new entry, dropped"
        );
    }

    #[test]
    fn sealed_batches_survive_a_restart_on_disk_in_order() {
        let dir = std::env::temp_dir().join(format!("aiproxy-usage-{}", uuid::Uuid::new_v4()));
        let delivery = UsageDelivery::new("edge", settings(100), Some(&dir));
        delivery.sum_for(true);
        for n in [0, 1, 2, 3, 4, 4, 4] {
            delivery.push(record(n));
        }
        delivery.seal();
        assert!(
            !dir.join("usage").exists(),
            "sealing alone writes nothing: the happy path stays off the disk"
        );
        delivery.spill_waiting();
        drop(delivery);
        std::fs::write(dir.join("usage/zzz.pb"), b"\xff\xff not a batch").unwrap();
        let again = UsageDelivery::new("edge", settings(100), Some(&dir));
        let status = again.status();
        assert_eq!((status.pending_records, status.pending_entries), (7, 5));
        let totals: Vec<u64> = sealed(&again)
            .into_iter()
            .flat_map(|(_, b)| b.sums.into_iter().map(|s| s.total_tokens))
            .collect();
        assert_eq!(totals, vec![0, 1, 2, 3, 12]);
        assert!(dir.join("usage/zzz.bad").exists());
        let sizes: Vec<(usize, usize)> =
            again.with(|b| b.sealed.iter().map(|s| (s.records, s.entries)).collect());
        assert_eq!(sizes, vec![(2, 2), (2, 2), (3, 1)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
