//! Getting usage records to the control plane: nothing lost, nothing counted twice.
//!
//! Records collect in memory and are sealed into batches (at most `batch_records` each) at least
//! every `flush_interval`, or at once when that many are waiting. A sealed batch has an id and
//! never changes: it is sent, and sent again with the same id until the control plane
//! acknowledges it, which applies each id once. A record is encoded when it is taken, into the
//! batch it will go in, so sealing only adds the batch's ids: no request waits behind a burst of
//! encoding (or of freeing records) when a batch is sealed. With
//! `AIPROXY_EDGE_STATE_DIR` set, a batch whose send fails (and, at shutdown, any not yet
//! acknowledged) is written to `<dir>/usage/` and deleted when acknowledged, so a restart (or a
//! crash during an outage) delivers it later; on the happy path, which is the request path's
//! core, nothing touches the disk. While the control plane is unreachable, records wait, up to
//! `buffer_records`; past that, new records are dropped, counted (`/readyz`) and logged. On
//! shutdown the edge seals and sends what it holds before it exits.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aiproxy_proto::EncodedUsageBatch;
use aiproxy_proto::v1 as pb;
use bytes::Bytes;
use prost::Message;
use tokio::sync::Notify;

use crate::control_calls::ControlPlaneCalls;

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub flush_interval: Duration,
    pub batch_records: usize,
    pub buffer_records: usize,
    /// The most of one answer kept to find its usage (`AIPROXY_USAGE_SCAN_BYTES`).
    pub scan_bytes: usize,
}

/// How delivery is going, for `/readyz`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeliveryStatus {
    /// Records not yet acknowledged by the control plane.
    pub pending_records: usize,
    /// Records dropped because the buffer was full (since the edge started).
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
    records: usize,
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

/// A batch's records, encoded as its `records` field (`pb::UsageBatch` field 3): the batch's ids
/// are appended when it is sealed (a protobuf message's fields may come in any order).
#[derive(Default)]
struct Open {
    encoded: Vec<u8>,
    records: usize,
}

impl Open {
    /// This batch, leaving an empty one sized like it (the next batch is likely as large: no
    /// regrowing on the request path).
    fn take(&mut self) -> Open {
        let next = Open {
            encoded: Vec::with_capacity(self.encoded.len()),
            records: 0,
        };
        std::mem::replace(self, next)
    }
}

/// `pb::UsageBatch`'s field numbers.
const BATCH_ID_FIELD: u32 = 1;
const EDGE_ID_FIELD: u32 = 2;
const RECORDS_FIELD: u32 = 3;

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
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Buffer) -> R) -> R {
        f(&mut self.buffer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes one record (never blocks; drops and counts it when the buffer is full).
    pub fn push(&self, record: pb::UsageRecord) {
        let (dropped, full_batch) = self.with(|b| {
            if b.status.pending_records >= self.settings.buffer_records {
                b.status.dropped_records += 1;
                return (Some(b.status.dropped_records), false);
            }
            prost::encoding::message::encode(RECORDS_FIELD, &record, &mut b.open.encoded);
            b.open.records += 1;
            b.status.pending_records += 1;
            let full = b.open.records >= self.settings.batch_records;
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
                     records,
                 }| {
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
            let Some((id, records, encoded)) = self.with(|b| {
                b.sealed
                    .front()
                    .map(|s| (s.id.clone(), s.records, s.encoded.clone()))
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
                records: batch.records.len(),
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

    fn record(n: u64) -> pb::UsageRecord {
        pb::UsageRecord {
            event_id: "e".into(),
            total_tokens: n,
            ..Default::default()
        }
    }

    /// A sealed batch decodes to the batch its records were taken into: its id, the edge's id
    /// and every record, in order, at most `batch_records` in each.
    #[test]
    fn sealed_batches_decode_to_their_ids_and_records_in_order() {
        let delivery = UsageDelivery::new("edge-7", settings(100), None);
        let records: Vec<pb::UsageRecord> = (0..5)
            .map(|n| pb::UsageRecord {
                user_id: format!("attendee {n}"),
                once_key: if n == 3 {
                    "run:r".into()
                } else {
                    String::new()
                },
                ..record(n)
            })
            .collect();
        for r in &records {
            delivery.push(r.clone());
        }
        delivery.seal();
        delivery.seal();
        let batches: Vec<(String, pb::UsageBatch)> = delivery.with(|b| {
            b.sealed
                .iter()
                .map(|s| {
                    (
                        s.id.clone(),
                        pb::UsageBatch::decode(s.encoded.as_ref()).unwrap(),
                    )
                })
                .collect()
        });
        assert_eq!(batches.len(), 3);
        for (id, batch) in &batches {
            assert_eq!(&batch.batch_id, id);
            assert_eq!(batch.edge_id, "edge-7");
        }
        let ids: std::collections::HashSet<&String> = batches.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 3, "every batch has its own id");
        let decoded: Vec<pb::UsageRecord> =
            batches.into_iter().flat_map(|(_, b)| b.records).collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        let delivery = UsageDelivery::new("edge", settings(3), None);
        for n in 0..5 {
            delivery.push(record(n));
        }
        let status = delivery.status();
        assert_eq!((status.pending_records, status.dropped_records), (3, 2));
    }

    #[test]
    fn sealed_batches_survive_a_restart_on_disk_in_order() {
        let dir = std::env::temp_dir().join(format!("aiproxy-usage-{}", uuid::Uuid::new_v4()));
        let delivery = UsageDelivery::new("edge", settings(100), Some(&dir));
        for n in 0..5 {
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
        assert_eq!(again.status().pending_records, 5);
        let totals: Vec<u64> = again.with(|b| {
            b.sealed
                .iter()
                .flat_map(|s| {
                    pb::UsageBatch::decode(s.encoded.as_ref())
                        .unwrap()
                        .records
                        .into_iter()
                        .map(|r| r.total_tokens)
                })
                .collect()
        });
        assert_eq!(totals, vec![0, 1, 2, 3, 4]);
        assert!(dir.join("usage/zzz.bad").exists());
        let sizes: Vec<usize> = again.with(|b| b.sealed.iter().map(|s| s.records).collect());
        assert_eq!(sizes, vec![2, 2, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
