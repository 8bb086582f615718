//! Kafka → lake: purchase events into `stage.purchases`, exactly once, with dead letters.
//!
//! The design (docs/KAFKA.md has the full argument):
//! - One consumer of a group, polled on one thread. Messages are decoded and validated as they
//!   arrive and buffered per partition; a partition's buffer is flushed when it holds
//!   `flush_rows` rows or `flush_bytes` bytes, or its oldest message waited `flush_interval`.
//! - A flush of partition `p` covering offsets `start..=end` writes one Parquet object per
//!   purchase day, `stage/purchases/dt=D/part+<topic>+<p>+<start>+<end>.parquet`, and the dead
//!   letters of the range to `stage/_rejected/purchases/…` (same name). Each is one PUT.
//! - The lake, not Kafka, is the source of truth for progress: a small marker per partition,
//!   `stage/purchases/_offsets/<topic>/<p>.json`, holds the next offset to write. A flush first
//!   records the files it is about to write as *pending*, then writes them, then moves
//!   `next_offset` past `end` and clears *pending*, and only then commits `end + 1` to Kafka.
//! - When a partition is assigned (start, restart, rebalance), it starts at its marker's
//!   `next_offset` (not the group's commit), files left pending by a crash are deleted, and
//!   messages below `next_offset` are skipped. So a crash at
//!   any point neither loses a message (nothing is committed before it is durable) nor writes one
//!   twice (a replayed message below the marker is skipped; one above it was never made visible
//!   except in pending files, which are removed before the range is written again).
//! - Flushes run between polls, so a rebalance (which happens inside `poll`) never meets a flush
//!   in progress; revoked partitions drop their unwritten buffers, and the next owner re-reads
//!   them from the marker. Marker writes are conditional on the version last seen (on S3), so a
//!   worker fenced out of its group cannot overwrite a new owner's progress.
//! - A repeated `purchase_id` (a retried send) within [`DEDUP_WINDOW`] of the first copy is a
//!   dead letter with reason `duplicate purchase_id`: events are keyed by `purchase_id`, so
//!   every copy lands in the same partition, and the marker names the partition's files of the
//!   window, whose ids a new owner loads.

pub mod generate;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch, StringArray};
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use parquet::arrow::ArrowWriter;
use rdkafka::Offset;
use rdkafka::message::{BorrowedMessage, Message};
use serde::{Deserialize, Serialize};
use shop_kafka::{ConsumerConfig, Flushed, Sink, StartOffset};
use shop_lake::{Lake, layout};
use tokio::runtime::Handle;

use shop_types::purchases::{self, PurchaseBatch, Rejected};

/// The lake table purchases land in.
pub const TABLE: &str = shop_types::tables::PURCHASES.name;

/// Errors of the Kafka worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] shop_kafka::Error),
    #[error(transparent)]
    Lake(#[from] shop_lake::Error),
    #[error("the offsets marker {path} is corrupt: {cause}")]
    Marker {
        path: String,
        cause: serde_json::Error,
    },
    #[error("encoding Parquet for {path}: {cause}")]
    Parquet {
        path: String,
        cause: parquet::errors::ParquetError,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the worker consumes and when it flushes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub consumer: ConsumerConfig,
    /// Flush a partition once it buffers this many events (valid or not).
    pub flush_rows: usize,
    /// … or this many payload bytes.
    pub flush_bytes: usize,
    /// … or when its oldest buffered event waited this long.
    pub flush_interval: Duration,
}

impl WorkerConfig {
    pub fn new(brokers: &str, topic: &str, group: &str) -> Self {
        Self {
            consumer: ConsumerConfig::new(brokers, topic, group, "shop-analytics-ingest-kafka"),
            flush_rows: 50_000,
            flush_bytes: 32 << 20,
            flush_interval: Duration::from_secs(2),
        }
    }
}

/// Counters of a running worker (also logged every `metrics_interval`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Purchases written to the lake.
    pub rows: AtomicU64,
    /// Dead letters written.
    pub rejected: AtomicU64,
    /// Parquet objects written (data and dead letters).
    pub files: AtomicU64,
    /// Flushes completed.
    pub flushes: AtomicU64,
    /// Messages behind the high watermark, summed over the assigned partitions (-1: unknown).
    pub lag: AtomicI64,
}

/// The per-partition progress marker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Every message below this offset is in the lake (as a purchase or a dead letter).
    pub next_offset: i64,
    /// Files of a flush that had started but not finished.
    #[serde(default)]
    pub pending: Vec<String>,
    /// Data files written in the last [`DEDUP_WINDOW`] (path, unix seconds): their purchase_ids
    /// are the ones a new owner of the partition checks repeats against.
    #[serde(default)]
    pub recent: Vec<(String, i64)>,
}

/// How long after its first copy a repeated purchase_id is still recognised (by ingest time).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(15 * 60);

fn unix_now() -> i64 {
    Utc::now().timestamp()
}

pub fn marker_path(topic: &str, partition: i32) -> Path {
    layout::table_dir(layout::STAGE, TABLE)
        .join("_offsets")
        .join(topic)
        .join(format!("{partition}.json"))
}

/// The name of the objects a flush writes: unique per topic, partition and offset range. Only
/// characters that object_store keeps as they are (Kafka topics are `[a-zA-Z0-9._-]`), so listed
/// names compare equal to built ones.
pub fn object_name(topic: &str, partition: i32, start: i64, end: i64) -> String {
    format!("part+{topic}+{partition}+{start:020}+{end:020}.parquet")
}

pub fn rejected_dir() -> Path {
    layout::dead_letter_dir(layout::STAGE, TABLE)
}

pub async fn read_marker(lake: &Lake, topic: &str, partition: i32) -> Result<Option<Marker>> {
    Ok(read_marker_versioned(lake, topic, partition)
        .await?
        .map(|(marker, _)| marker))
}

/// The marker and the version it was read at (for the conditional write that follows).
async fn read_marker_versioned(
    lake: &Lake,
    topic: &str,
    partition: i32,
) -> Result<Option<(Marker, UpdateVersion)>> {
    let path = marker_path(topic, partition);
    match lake.store().get(&path).await {
        Ok(got) => {
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let bytes = got
                .bytes()
                .await
                .map_err(|e| shop_lake::Error::store(&path, e))?;
            serde_json::from_slice(&bytes)
                .map(|marker| Some((marker, version)))
                .map_err(|cause| Error::Marker {
                    path: path.to_string(),
                    cause,
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(shop_lake::Error::store(&path, e).into()),
    }
}

/// Writes the marker only if it is still at `expected` (`None`: it must not exist yet), so a
/// worker that lost its partition to another cannot overwrite the new owner's progress.
/// `Ok(None)` when another writer changed it. Stores without conditional updates (the local
/// file system) are overwritten instead: there, one worker per lake is assumed.
async fn write_marker(
    lake: &Lake,
    topic: &str,
    partition: i32,
    marker: &Marker,
    expected: Option<&UpdateVersion>,
) -> Result<Option<UpdateVersion>> {
    let path = marker_path(topic, partition);
    let json = serde_json::to_vec(marker).expect("a marker serialises");
    let mode = match expected {
        Some(v) => PutMode::Update(v.clone()),
        None => PutMode::Create,
    };
    let put = |mode| {
        lake.store()
            .put_opts(&path, json.clone().into(), PutOptions::from(mode))
    };
    let result = match put(mode).await {
        Err(object_store::Error::NotImplemented { .. }) => put(PutMode::Overwrite).await,
        other => other,
    };
    match result {
        Ok(done) => Ok(Some(UpdateVersion {
            e_tag: done.e_tag,
            version: done.version,
        })),
        Err(
            object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. },
        ) => Ok(None),
        Err(e) => Err(shop_lake::Error::store(&path, e).into()),
    }
}

/// What one partition holds between flushes.
struct PartitionState {
    next_offset: i64,
    first: Option<(i64, Instant)>,
    last: i64,
    bytes: usize,
    events: usize,
    rows: BTreeMap<NaiveDate, PurchaseBatch>,
    rejected: Vec<Rejected>,
    /// purchase_ids (as UUID bits) of this partition written or buffered within the dedup
    /// window.
    known: HashSet<u128>,
    /// When each id of `known` arrived, oldest first, to forget them after the window.
    known_since: std::collections::VecDeque<(i64, u128)>,
    /// The marker's `recent` list.
    recent: Vec<(String, i64)>,
    /// The marker's version as last read or written by this worker.
    version: Option<UpdateVersion>,
}

impl PartitionState {
    fn new(recovered: Recovered) -> Self {
        let Recovered {
            next_offset,
            version,
            recent,
            known,
        } = recovered;
        let now = unix_now();
        Self {
            next_offset,
            version,
            first: None,
            last: -1,
            bytes: 0,
            events: 0,
            rows: BTreeMap::new(),
            rejected: Vec::new(),
            known_since: known.iter().map(|id| (now, *id)).collect(),
            known: known.into_iter().collect(),
            recent,
        }
    }

    /// Forgets ids older than the dedup window.
    fn forget_old_ids(&mut self) {
        let horizon = unix_now() - DEDUP_WINDOW.as_secs() as i64;
        while let Some((at, _)) = self.known_since.front() {
            if *at >= horizon {
                break;
            }
            let (_, id) = self.known_since.pop_front().expect("not empty");
            self.known.remove(&id);
        }
    }

    fn clear_buffer(&mut self) {
        self.first = None;
        self.bytes = 0;
        self.events = 0;
        self.rows.clear();
        self.rejected.clear();
    }
}

/// What a new owner of a partition starts from.
struct Recovered {
    next_offset: i64,
    /// The marker's version, for the next conditional write (`None`: no marker yet).
    version: Option<UpdateVersion>,
    /// The marker's recent files and their purchase_ids.
    recent: Vec<(String, i64)>,
    known: Vec<u128>,
}

/// The worker: call [`Worker::run`] on a blocking thread.
pub struct Worker {
    lake: Lake,
    config: WorkerConfig,
    handle: Handle,
    metrics: Arc<Metrics>,
    partitions: HashMap<i32, PartitionState>,
}

impl Worker {
    pub fn new(lake: Lake, config: WorkerConfig, handle: Handle, metrics: Arc<Metrics>) -> Self {
        Self {
            lake,
            config,
            handle,
            metrics,
            partitions: HashMap::new(),
        }
    }

    /// Consumes until `stop` is set, then flushes what it holds.
    pub fn run(mut self, stop: &AtomicBool) -> Result<()> {
        let config = self.config.consumer.clone();
        shop_kafka::run(&config, &mut self, stop)
    }

    /// Reads the partition's marker, deletes the files of an unfinished flush, and returns the
    /// first offset not yet in the lake, the recent files and their purchase_ids.
    fn recover(&self, partition: i32) -> Result<Recovered> {
        let topic = self.config.consumer.topic.clone();
        self.handle.block_on(async {
            let Some((mut marker, mut version)) =
                read_marker_versioned(&self.lake, &topic, partition).await?
            else {
                return Ok(Recovered {
                    next_offset: 0,
                    version: None,
                    recent: Vec::new(),
                    known: Vec::new(),
                });
            };
            if !marker.pending.is_empty() {
                for file in &marker.pending {
                    let path = Path::from(file.as_str());
                    match self.lake.store().delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(shop_lake::Error::store(&path, e).into()),
                    }
                }
                tracing::warn!(
                    partition,
                    files = marker.pending.len(),
                    "removed the files of a flush that did not finish; they are written again"
                );
                marker.pending.clear();
                version = write_marker(&self.lake, &topic, partition, &marker, Some(&version))
                    .await?
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "the offsets marker of partition {partition} changed during recovery: \
                             another worker of the group writes it"
                        ))
                    })?;
            }
            let horizon = unix_now() - DEDUP_WINDOW.as_secs() as i64;
            marker.recent.retain(|(_, at)| *at >= horizon);
            let mut known = Vec::new();
            for (file, _) in &marker.recent {
                match read_ids(&self.lake, Path::from(file.as_str())).await {
                    Ok(ids) => known.extend(ids),
                    Err(e) => tracing::warn!(
                        partition,
                        file,
                        cause = %e,
                        "cannot read the purchase ids of a recent file; repeats of them are not recognised"
                    ),
                }
            }
            Ok(Recovered {
                next_offset: marker.next_offset,
                version: Some(version),
                recent: marker.recent,
                known,
            })
        })
    }

    fn accept_message(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        if m.topic() != self.config.consumer.topic {
            return Ok(());
        }
        let partition = m.partition();
        let offset = m.offset();
        let Some(state) = self.partitions.get_mut(&partition) else {
            return Ok(());
        };
        if offset < state.next_offset || offset <= state.last {
            // Already in the lake (a replay after a crash between the marker and the commit), or
            // already buffered (librdkafka delivering again after an offset reset).
            return Ok(());
        }
        let timestamp = m.timestamp().to_millis();
        let decoded = match m.payload() {
            None => Err("the message has no payload".to_string()),
            Some(payload) => purchases::decode(payload, timestamp),
        }
        .and_then(|p| {
            let id = uuid_bits(&p.purchase_id);
            if state.known.insert(id) {
                state.known_since.push_back((unix_now(), id));
                Ok(p)
            } else {
                Err(format!(
                    "duplicate purchase_id {}: it is already in stage.purchases",
                    p.purchase_id
                ))
            }
        });
        state.first.get_or_insert((offset, Instant::now()));
        state.last = offset;
        state.events += 1;
        state.bytes += m.payload_len();
        match decoded {
            Ok(p) => state.rows.entry(p.day()).or_default().push(&p),
            Err(reason) => state.rejected.push(Rejected {
                topic: self.config.consumer.topic.clone(),
                partition,
                offset,
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                reason,
                kafka_timestamp_ms: timestamp,
                rejected_at: Utc::now(),
            }),
        }
        Ok(())
    }

    /// Writes one partition's buffer; `Some(next offset)` once it is in the lake, `None` when
    /// another worker took the partition over.
    fn flush_partition(&mut self, partition: i32) -> Result<Option<i64>> {
        let topic = self.config.consumer.topic.clone();
        let state = self.partitions.get_mut(&partition).expect("assigned");
        let Some((start, _)) = state.first else {
            return Ok(None);
        };
        let end = state.last;
        let name = object_name(&topic, partition, start, end);
        let mut objects: Vec<(Path, RecordBatch)> = Vec::new();
        let mut rows = 0;
        for (day, batch) in std::mem::take(&mut state.rows) {
            let batch = batch.finish();
            rows += batch.num_rows() as u64;
            let path = layout::table_dir(layout::STAGE, TABLE)
                .join(format!("dt={day}"))
                .join(name.as_str());
            objects.push((path, batch));
        }
        let rejected = state.rejected.len() as u64;
        if rejected > 0 {
            objects.push((
                rejected_dir().join(name.as_str()),
                purchases::rejected_batch(&state.rejected),
            ));
        }
        let encoded = objects
            .into_iter()
            .map(|(path, batch)| encode(&path, &batch).map(|bytes| (path, bytes)))
            .collect::<Result<Vec<_>>>()?;
        let lake = self.lake.clone();
        let files = encoded.len() as u64;
        let now = unix_now();
        let horizon = now - DEDUP_WINDOW.as_secs() as i64;
        let mut recent: Vec<(String, i64)> = state
            .recent
            .iter()
            .filter(|(_, at)| *at >= horizon)
            .cloned()
            .collect();
        recent.extend(
            encoded
                .iter()
                .filter(|(p, _)| !p.as_ref().starts_with(rejected_dir().as_ref()))
                .map(|(p, _)| (p.to_string(), now)),
        );
        let previous_recent = state.recent.clone();
        let version = state.version.clone();
        let outcome = self.handle.block_on(async {
            let pending = Marker {
                next_offset: start,
                pending: encoded.iter().map(|(p, _)| p.to_string()).collect(),
                recent: previous_recent,
            };
            let Some(version) =
                write_marker(&lake, &topic, partition, &pending, version.as_ref()).await?
            else {
                return Ok::<_, Error>(Err("before"));
            };
            for (path, bytes) in encoded {
                lake.put_bytes(&path, bytes).await?;
            }
            let done = Marker {
                next_offset: end + 1,
                pending: Vec::new(),
                recent: recent.clone(),
            };
            Ok(
                write_marker(&lake, &topic, partition, &done, Some(&version))
                    .await?
                    .ok_or("while"),
            )
        })?;
        let version = match outcome {
            Ok(version) => version,
            Err(when) => {
                // Another worker owns the partition now (this one was fenced out of the group
                // without noticing): write nothing more for it.
                tracing::error!(
                    partition,
                    start,
                    end,
                    "the offsets marker changed {when} this flush: another worker took the \
                     partition over; dropping it here"
                );
                self.partitions.remove(&partition);
                return Ok(None);
            }
        };
        let state = self.partitions.get_mut(&partition).expect("assigned");
        state.next_offset = end + 1;
        state.version = Some(version);
        state.recent = recent;
        state.clear_buffer();
        state.forget_old_ids();
        self.metrics.rows.fetch_add(rows, Ordering::Relaxed);
        self.metrics.rejected.fetch_add(rejected, Ordering::Relaxed);
        self.metrics.files.fetch_add(files, Ordering::Relaxed);
        self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(partition, start, end, rows, rejected, files, "flushed");
        Ok(Some(end + 1))
    }
}

impl Sink for Worker {
    type Error = Error;

    /// Partitions start at the lake's `next_offset` (the beginning without a marker).
    fn start_offsets(&self) -> StartOffset {
        let (lake, topic, handle) = (
            self.lake.clone(),
            self.config.consumer.topic.clone(),
            self.handle.clone(),
        );
        Box::new(
            move |p| match handle.block_on(read_marker(&lake, &topic, p)) {
                Ok(Some(marker)) => Offset::Offset(marker.next_offset),
                Ok(None) => Offset::Beginning,
                Err(e) => {
                    // Messages below the marker are skipped anyway; this only loses the jump
                    // forward or back.
                    tracing::error!(partition = p, cause = %e, "cannot read the offsets marker; starting at the committed offset");
                    Offset::Stored
                }
            },
        )
    }

    fn assigned(&mut self, partitions: &[i32], _stop: &AtomicBool) -> Result<()> {
        for &p in partitions {
            let recovered = self.recover(p)?;
            tracing::info!(
                partition = p,
                next_offset = recovered.next_offset,
                recent_ids = recovered.known.len(),
                "partition assigned"
            );
            self.partitions.insert(p, PartitionState::new(recovered));
        }
        Ok(())
    }

    fn revoked(&mut self, partitions: &[i32]) {
        for p in partitions {
            if let Some(state) = self.partitions.remove(p) {
                tracing::info!(
                    partition = p,
                    dropped_unwritten = state.events,
                    "partition revoked; its next owner re-reads what was not written"
                );
            }
        }
    }

    fn accept(&mut self, message: &BorrowedMessage<'_>) -> Result<()> {
        self.accept_message(message)
    }

    /// Flushes each partition that buffers `flush_rows` events or `flush_bytes` bytes, or whose
    /// oldest event waited `flush_interval` (every partition when `all`).
    fn flush(&mut self, all: bool, _stop: &AtomicBool) -> Result<Flushed> {
        let due: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, s)| {
                s.first.is_some_and(|(_, since)| {
                    all || s.events >= self.config.flush_rows
                        || s.bytes >= self.config.flush_bytes
                        || since.elapsed() >= self.config.flush_interval
                })
            })
            .map(|(p, _)| *p)
            .collect();
        let mut flushed = Flushed::default();
        for partition in due {
            if let Some(next) = self.flush_partition(partition)? {
                flushed.positions.push((partition, next));
            }
        }
        Ok(flushed)
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .map(|(p, s)| (*p, (s.last + 1).max(s.next_offset)))
            .collect()
    }

    fn report(&self, lag: Option<i64>, elapsed: Duration) {
        let lag = lag.unwrap_or(-1);
        self.metrics.lag.store(lag, Ordering::Relaxed);
        let rows = self.metrics.rows.load(Ordering::Relaxed);
        tracing::info!(
            target: "metrics",
            partitions = self.partitions.len(),
            rows,
            rows_per_sec = (rows as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
            rejected = self.metrics.rejected.load(Ordering::Relaxed),
            files = self.metrics.files.load(Ordering::Relaxed),
            flushes = self.metrics.flushes.load(Ordering::Relaxed),
            lag,
            "kafka ingest"
        );
    }
}

/// A purchase_id as a number, for compact sets (ids that are not UUIDs hash as text).
fn uuid_bits(id: &str) -> u128 {
    uuid::Uuid::parse_str(id).map_or_else(
        |_| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut h);
            u128::from(h.finish())
        },
        |u| u.as_u128(),
    )
}

/// The purchase_ids of one data file (missing files, e.g. removed by hand, have none).
async fn read_ids(lake: &Lake, path: Path) -> Result<Vec<u128>> {
    let size = match lake.store().head(&path).await {
        Ok(meta) => meta.size,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(shop_lake::Error::store(&path, e).into()),
    };
    let parquet_err = |cause| Error::Parquet {
        path: path.to_string(),
        cause,
    };
    let builder = shop_lake::reader::open_parquet(lake, path.clone(), size)
        .await
        .map_err(parquet_err)?;
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["purchase_id"]);
    let mut stream = builder.with_projection(mask).build().map_err(parquet_err)?;
    let mut ids = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(parquet_err)?;
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Invalid(format!("{path}: purchase_id is not a string column")))?;
        ids.extend(column.iter().flatten().map(uuid_bits));
    }
    Ok(ids)
}

/// One Parquet object in memory (flushes are bounded by `flush_rows` / `flush_bytes`).
fn encode(path: &Path, batch: &RecordBatch) -> Result<Vec<u8>> {
    let err = |cause| Error::Parquet {
        path: path.to_string(),
        cause,
    };
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        batch.schema(),
        Some(shop_lake::writer::writer_properties()),
    )
    .map_err(err)?;
    writer.write(batch).map_err(err)?;
    writer.into_inner().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_survive_the_store_path_encoding() {
        let name = object_name("shop.purchases-v1_x", 3, 0, 12_345);
        let path = Path::from("stage/purchases/dt=2026-11-25").join(name.as_str());
        assert_eq!(path.filename(), Some(name.as_str()));
        assert!(layout::is_data_file(&name));
    }
}
