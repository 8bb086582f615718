//! The worker: a [`Sink`] of the shop's consumer loop that makes each partition's events
//! durable in the lake, exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, StringArray};
use chrono::Utc;
use futures::StreamExt;
use object_store::path::Path;
use rdkafka::Offset;
use rdkafka::message::{BorrowedMessage, Message};
use shop_kafka::{Flushed, Sink, StartOffset};
use shop_lake::Lake;
use shop_lake::delta::{CommitInfo, Mode, file_path};
use shop_types::purchases::{self, DAY_COLUMN, PurchaseBatch, Rejected, with_day};
use shop_types::report::Report;
use tokio::runtime::Handle;

use super::partition::{PartitionState, Recovered};
use super::progress::{DEDUP_WINDOW, app_id, data_dir, next_offset, rejected_dir, unix_now};
use super::{Error, Metrics, Result, WorkerConfig};

/// Tries of a dead-letter commit that lost to a concurrent one (a worker that lost the
/// partition committing the same range): each reads again which dead letters are committed.
const DEAD_LETTER_ATTEMPTS: usize = 3;

/// The worker: call [`Worker::run`] on a blocking thread.
pub struct Worker {
    lake: Lake,
    config: WorkerConfig,
    handle: Handle,
    metrics: Arc<Metrics>,
    partitions: HashMap<i32, PartitionState>,
    /// The purchase_ids of the lake's recent files, loaded at the last assignment and kept for
    /// the dedup window after it (one set for every partition: ids never repeat across
    /// partitions, since events are keyed by purchase_id).
    recent_ids: std::collections::HashSet<u128>,
    recent_since: Instant,
}

impl Worker {
    pub fn new(lake: Lake, config: WorkerConfig, handle: Handle, metrics: Arc<Metrics>) -> Self {
        Self {
            lake,
            config,
            handle,
            metrics,
            partitions: HashMap::new(),
            recent_ids: Default::default(),
            recent_since: Instant::now(),
        }
    }

    /// Consumes until `stop` is set, then flushes what it holds.
    pub fn run(mut self, stop: &AtomicBool) -> Result<()> {
        let config = self.config.consumer.clone();
        shop_kafka::run(&config, &mut self, stop)
    }

    fn app_id(&self, partition: i32) -> String {
        let consumer = &self.config.consumer;
        app_id(&consumer.group, &consumer.topic, partition)
    }

    /// Reads where the partition stands in the lake: its transaction version in the purchases.
    fn recover(&self, partition: i32) -> Result<Recovered> {
        let id = self.app_id(partition);
        self.handle.block_on(async {
            let committed = self.lake.transaction_version(&data_dir(), &id).await?;
            Ok(Recovered { committed })
        })
    }

    /// The purchase_ids of the files of `stage.purchases` written within the dedup window, in the
    /// partitions of today and yesterday (UTC): a retried send repeats a recent purchase, and the
    /// bound keeps a compaction of older days (which rewrites their files) from loading them.
    fn recent_ids(&self) -> Result<Vec<u128>> {
        self.handle.block_on(async {
            let Some(table) = self.lake.open_delta(&data_dir()).await? else {
                return Ok(Vec::new());
            };
            let horizon_ms = (unix_now() - DEDUP_WINDOW.as_secs() as i64) * 1000;
            let yesterday = (Utc::now() - chrono::Duration::days(1))
                .date_naive()
                .to_string();
            let state = table
                .snapshot()
                .map_err(|e| shop_lake::Error::delta(data_dir(), e))?;
            let recent: Vec<(Path, u64)> = state
                .log_data()
                .iter()
                .filter(|f| f.modification_time() >= horizon_ms)
                .filter(|f| {
                    f.partition_values_map()
                        .get(DAY_COLUMN)
                        .is_some_and(|day| day.as_deref() >= Some(yesterday.as_str()))
                })
                .map(|f| (file_path(&data_dir(), &f), f.size().max(0) as u64))
                .collect();
            let mut known = Vec::new();
            for (path, size) in recent {
                match read_ids(&self.lake, path.clone(), size).await {
                    Ok(ids) => known.extend(ids),
                    Err(e) => tracing::warn!(
                        file = %path,
                        cause = %Report(&e),
                        "cannot read the purchase ids of a recent file; repeats of them are not recognised"
                    ),
                }
            }
            Ok(known)
        })
    }

    fn accept_message(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        if m.topic() != self.config.consumer.topic {
            return Ok(());
        }
        let partition = m.partition();
        let offset = m.offset();
        if self.recent_since.elapsed() > DEDUP_WINDOW && !self.recent_ids.is_empty() {
            self.recent_ids = Default::default();
        }
        let recent_ids = &self.recent_ids;
        let Some(state) = self.partitions.get_mut(&partition) else {
            return Ok(());
        };
        if offset < state.next_offset || offset <= state.last {
            // Already in the lake (a replay after a crash between the lake's commit and Kafka's), or
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
            if !recent_ids.contains(&id) && state.known.insert(id) {
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

    /// Commits one partition's buffer; `Some(next offset)` once it is in the lake.
    fn flush_partition(&mut self, partition: i32) -> Result<Option<i64>> {
        let id = self.app_id(partition);
        let state = self.partitions.get_mut(&partition).expect("assigned");
        let Some((start, _)) = state.first else {
            return Ok(None);
        };
        let end = state.last;
        let mut batches = Vec::new();
        let mut rows = 0;
        for (day, batch) in std::mem::take(&mut state.rows) {
            let batch = batch.finish();
            rows += batch.num_rows() as u64;
            batches.push(with_day(&batch, day));
        }
        if batches.is_empty() {
            // Only dead letters: the commit still records how far the partition is written.
            let empty = PurchaseBatch::default().finish();
            batches.push(with_day(&empty, Utc::now().date_naive()));
        }
        let rejected = std::mem::take(&mut state.rejected);
        let committed = state.committed;
        let lake = self.lake.clone();
        let outcome = self.handle.block_on(async {
            let dead_letters = commit_dead_letters(&lake, &id, &rejected, end).await?;
            let data = lake
                .write_delta(
                    &data_dir(),
                    &[DAY_COLUMN],
                    batches,
                    Mode::Append,
                    CommitInfo::transaction(&id, end, committed),
                )
                .await;
            match data {
                Ok(_) => Ok::<_, Error>((dead_letters, None)),
                Err(e) if e.is_conflict() => {
                    // Someone else committed the partition: read how far.
                    let found = lake.transaction_version(&data_dir(), &id).await?;
                    Ok((dead_letters, Some((found, e))))
                }
                Err(e) => Err(e.into()),
            }
        })?;
        let (written_rejected, conflict) = outcome;
        let (committed_now, rows) = match conflict {
            None => (end, rows),
            // This flush's range is in the lake: its own commit whose answer was lost (the
            // retry met it), or another worker's that covered it (the partition moved while
            // this one stalled). Go on after it; the messages up to it are skipped.
            Some((Some(found), cause)) if found >= end => {
                tracing::warn!(
                    partition,
                    start,
                    end,
                    found,
                    cause = %Report(&cause),
                    "the partition was committed up to {found} meanwhile; going on after it"
                );
                (found, if found == end { rows } else { 0 })
            }
            // Another worker committed part of this range only: what this one buffered beyond
            // it is not in the lake, and the consumer has moved past it. Stop, so that the next
            // start reads on from the lake's offset (nothing lost, nothing twice).
            Some((found, cause)) => {
                return Err(Error::Invalid(format!(
                    "partition {partition}: another worker committed it up to offset {found:?} \
                     while this one held offsets {start}..={end}; stopping, so that a restart \
                     reads on from the lake ({})",
                    Report(&cause)
                )));
            }
        };
        let state = self.partitions.get_mut(&partition).expect("assigned");
        state.next_offset = committed_now + 1;
        state.committed = Some(committed_now);
        state.clear_buffer();
        state.forget_old_ids();
        self.metrics.rows.fetch_add(rows, Ordering::Relaxed);
        self.metrics
            .rejected
            .fetch_add(written_rejected.rows, Ordering::Relaxed);
        self.metrics
            .commits
            .fetch_add(1 + written_rejected.commits, Ordering::Relaxed);
        self.metrics.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            partition,
            start,
            end,
            rows,
            rejected = written_rejected.rows,
            "flushed"
        );
        Ok(Some(committed_now + 1))
    }
}

/// What a dead-letter commit wrote.
#[derive(Debug, Default)]
struct DeadLetters {
    rows: u64,
    commits: u64,
}

/// Commits the dead letters of a flush that ends at `end` and that the dead-letter table does
/// not hold yet (a flush whose data commit did not follow may have committed some of them).
async fn commit_dead_letters(
    lake: &Lake,
    id: &str,
    rejected: &[Rejected],
    end: i64,
) -> Result<DeadLetters> {
    if rejected.is_empty() {
        return Ok(DeadLetters::default());
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let through = lake.transaction_version(&rejected_dir(), id).await?;
        let new: Vec<Rejected> = rejected
            .iter()
            .filter(|r| through.is_none_or(|t| r.offset > t))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(DeadLetters::default());
        }
        let written = lake
            .write_delta(
                &rejected_dir(),
                &[],
                vec![purchases::rejected_batch(&new)],
                Mode::Append,
                CommitInfo::transaction(id, end, through),
            )
            .await;
        match written {
            Ok(_) => {
                return Ok(DeadLetters {
                    rows: new.len() as u64,
                    commits: 1,
                });
            }
            Err(e) if e.is_conflict() && attempt < DEAD_LETTER_ATTEMPTS => {
                tracing::warn!(cause = %Report(&e), "dead-letter commit conflict; reading again what is committed");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Sink for Worker {
    type Error = Error;

    /// Partitions start after the offset committed in `stage.purchases` (the beginning when
    /// nothing is).
    fn start_offsets(&self) -> StartOffset {
        let (lake, group, topic, handle) = (
            self.lake.clone(),
            self.config.consumer.group.clone(),
            self.config.consumer.topic.clone(),
            self.handle.clone(),
        );
        Box::new(
            move |p| match handle.block_on(next_offset(&lake, &group, &topic, p)) {
                Ok(Some(next)) => Offset::Offset(next),
                Ok(None) => Offset::Beginning,
                Err(e) => {
                    // Messages below the committed offset are skipped anyway; this only loses
                    // the jump forward or back.
                    tracing::error!(partition = p, cause = %Report(&e), "cannot read the partition's progress in the lake; starting at the group's offset");
                    Offset::Stored
                }
            },
        )
    }

    fn assigned(&mut self, partitions: &[i32], _stop: &AtomicBool) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.recent_ids = self.recent_ids()?.into_iter().collect();
        self.recent_since = Instant::now();
        for &p in partitions {
            let recovered = self.recover(p)?;
            tracing::info!(
                partition = p,
                committed = recovered.committed,
                recent_ids = self.recent_ids.len(),
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
            commits = self.metrics.commits.load(Ordering::Relaxed),
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

/// The purchase_ids of one data file.
async fn read_ids(lake: &Lake, path: Path, size: u64) -> Result<Vec<u128>> {
    let parquet_err = |source| Error::Parquet {
        path: path.to_string(),
        source,
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
