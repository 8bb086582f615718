//! The worker: a [`Sink`] of the shop's consumer loop that makes each partition's events
//! durable in the lake, exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch, StringArray};
use chrono::Utc;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use rdkafka::Offset;
use rdkafka::message::{BorrowedMessage, Message};
use shop_kafka::{Flushed, Sink, StartOffset};
use shop_lake::{Lake, layout};
use shop_types::purchases::{self, Rejected};
use shop_types::report::Report;
use tokio::runtime::Handle;

use super::marker::{
    DEDUP_WINDOW, Marker, object_name, read_marker, read_marker_versioned, rejected_dir, unix_now,
    write_marker,
};
use super::partition::{PartitionState, Recovered};
use super::{Error, Metrics, Result, TABLE, WorkerConfig};

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
                        cause = %Report(&e),
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
                    tracing::error!(partition = p, cause = %Report(&e), "cannot read the offsets marker; starting at the committed offset");
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

/// One Parquet object in memory (flushes are bounded by `flush_rows` / `flush_bytes`).
fn encode(path: &Path, batch: &RecordBatch) -> Result<Vec<u8>> {
    let err = |source| Error::Parquet {
        path: path.to_string(),
        source,
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
