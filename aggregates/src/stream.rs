//! Purchases streamed from Kafka into ClickHouse (`shop-analytics stream clickhouse`).
//!
//! Events are decoded with the same contract as the lake worker (`shop_types::purchases`) and
//! buffered; a flush sorts them by partition and offset and inserts the dead letters into
//! `purchases_rejected`, then the purchases into `purchases`, each in one INSERT.
//!
//! **ClickHouse is the truth about progress.** Every row carries its Kafka partition and
//! offset. When a partition is assigned, the loader asks ClickHouse for the highest offset of
//! that partition in `purchases` and starts right after it; the group's committed offset is only
//! a progress report. `purchases` has no PARTITION BY, so an INSERT (at most
//! [`MAX_FLUSH_ROWS`] rows, one ClickHouse block) is one part, committed all or nothing: after a
//! crash the loader resumes exactly where the data ends, and no message is loaded twice or
//! skipped. Dead letters after the last purchase may be read again and fold into the same rows of
//! `purchases_rejected` (keyed by partition and offset).
//!
//! A failed insert (ClickHouse down) is retried with backoff while nothing new is consumed;
//! before each retry the rows ClickHouse already holds (an insert that timed out on our side but
//! was committed) are dropped from the batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::Utc;
use rdkafka::Offset;
use rdkafka::message::{BorrowedMessage, Message};
use serde::Deserialize;
use shop_kafka::{ConsumerConfig, Flushed, Sink, StartOffset};
use shop_types::purchases::{self, Purchase, PurchaseBatch, Rejected};
use tokio::runtime::Handle;

use crate::clickhouse::ClickHouse;
use crate::{Error, Result};

/// The ClickHouse table of the purchases.
pub const PURCHASES: &str = "purchases";
/// The ClickHouse table of the events that could not be loaded.
pub const REJECTED: &str = "purchases_rejected";
/// DDL of both.
pub const DDL: [&str; 2] = [
    include_str!("../clickhouse/purchases.sql"),
    include_str!("../clickhouse/purchases_rejected.sql"),
];

/// The last instant ClickHouse's `DateTime` holds (2106-02-07T06:28:15Z), in microseconds.
const DATETIME_MAX_MICROS: i64 = u32::MAX as i64 * 1_000_000;

/// Most events per INSERT: ClickHouse commits an INSERT of up to `max_insert_block_size`
/// (1,048,576) rows into an unpartitioned table as one part, all or nothing.
pub const MAX_FLUSH_ROWS: usize = 500_000;

/// Settings of the loader.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Its own consumer group, apart from the lake worker's.
    pub consumer: ConsumerConfig,
    /// Insert once this many events are buffered (at most [`MAX_FLUSH_ROWS`])…
    pub flush_rows: usize,
    /// … or the oldest buffered event waited this long.
    pub flush_interval: Duration,
    /// Longest wait between two tries of a failed insert.
    pub retry_max: Duration,
}

impl StreamConfig {
    pub fn new(brokers: &str, topic: &str, group: &str) -> Self {
        Self {
            consumer: ConsumerConfig::new(
                brokers,
                topic,
                group,
                "shop-analytics-stream-clickhouse",
            ),
            flush_rows: 50_000,
            flush_interval: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Counters of a running loader.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    pub rows: AtomicU64,
    pub rejected: AtomicU64,
    pub inserts: AtomicU64,
    pub failed_inserts: AtomicU64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct MaxOffset {
    kafka_partition: i32,
    kafka_offset: i64,
}

/// The next offset to load per partition of `topic`: one past the highest in `purchases`.
pub async fn next_offsets(ch: &ClickHouse, topic: &str) -> Result<HashMap<i32, i64>> {
    let sql = format!(
        "SELECT kafka_partition, max(kafka_offset) AS kafka_offset FROM {} \
         WHERE kafka_topic = ? GROUP BY kafka_partition",
        ch.qualified(PURCHASES)
    );
    let rows: Vec<MaxOffset> = ch
        .call(
            format!("reading the loaded offsets of {topic}"),
            ch.client().query(&sql).bind(topic).fetch_all(),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.kafka_partition, r.kafka_offset + 1))
        .collect())
}

/// The loader: call [`Loader::run`] on a blocking thread.
pub struct Loader {
    ch: ClickHouse,
    config: StreamConfig,
    handle: Handle,
    metrics: Arc<StreamMetrics>,
    /// Next offset to accept, per assigned partition.
    next: HashMap<i32, i64>,
    buffer: Vec<(i32, i64, std::result::Result<Purchase, Rejected>)>,
    oldest: Option<Instant>,
}

impl Loader {
    /// Creates the ClickHouse tables if missing.
    pub async fn prepare(ch: &ClickHouse) -> Result<()> {
        ch.create_tables(&DDL).await
    }

    pub fn new(
        ch: ClickHouse,
        config: StreamConfig,
        handle: Handle,
        metrics: Arc<StreamMetrics>,
    ) -> Self {
        Self {
            ch,
            config,
            handle,
            metrics,
            next: HashMap::new(),
            buffer: Vec::new(),
            oldest: None,
        }
    }

    /// Consumes until `stop` is set, then inserts what it holds.
    pub fn run(mut self, stop: &AtomicBool) -> Result<()> {
        tracing::info!(clickhouse = %self.ch.url(), "streaming purchases into ClickHouse");
        let config = self.config.consumer.clone();
        shop_kafka::run(&config, &mut self, stop)
    }

    /// The next offsets from ClickHouse, retried with backoff until they come or `stop` is set.
    fn next_offsets(&self, stop: &AtomicBool) -> Result<HashMap<i32, i64>> {
        let mut wait = Duration::from_millis(500);
        loop {
            match self
                .handle
                .block_on(next_offsets(&self.ch, &self.config.consumer.topic))
            {
                Ok(next) => return Ok(next),
                Err(e) if stop.load(Ordering::Relaxed) => return Err(e),
                Err(e) => {
                    tracing::error!(cause = %e, retry_in_secs = wait.as_secs_f64(), "cannot read the loaded offsets; retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(self.config.retry_max);
                }
            }
        }
    }

    fn accept_message(&mut self, m: &BorrowedMessage<'_>) {
        let (partition, offset) = (m.partition(), m.offset());
        let Some(next) = self.next.get_mut(&partition) else {
            return; // not (or no longer) ours
        };
        if offset < *next {
            return; // already in ClickHouse
        }
        *next = offset + 1;
        let timestamp = m.timestamp().to_millis();
        let decoded = match m.payload() {
            Some(payload) => purchases::decode(payload, timestamp),
            None => Err("the message has no payload".to_string()),
        };
        // ClickHouse's DateTime holds 1970-01-01 to 2106-02-07; outside it the insert would fail
        // on every retry, so such an event is a dead letter (as is one with a broken timestamp).
        let decoded = decoded.and_then(|p| {
            if (0..=DATETIME_MAX_MICROS).contains(&p.purchased_at) {
                Ok(p)
            } else {
                Err(format!(
                    "purchased_at {} is outside what ClickHouse stores (1970-01-01 to 2106-02-07)",
                    chrono::DateTime::from_timestamp_micros(p.purchased_at)
                        .map_or_else(|| p.purchased_at.to_string(), |t| t.to_rfc3339())
                ))
            }
        });
        let row = decoded.map_err(|reason| Rejected {
            topic: self.config.consumer.topic.clone(),
            partition,
            offset,
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            reason,
            kafka_timestamp_ms: timestamp
                .filter(|ms| (0..=DATETIME_MAX_MICROS / 1000).contains(ms)),
            rejected_at: Utc::now(),
        });
        self.buffer.push((partition, offset, row));
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Inserts the buffer, retrying with backoff until it succeeds or `stop` is set.
    fn insert(&mut self, stop: &AtomicBool) -> Result<()> {
        self.buffer.sort_by_key(|(p, o, _)| (*p, *o));
        let mut wait = Duration::from_millis(500);
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                // An insert that failed on our side (a timeout) may have been committed by
                // ClickHouse: keep only what is not there yet.
                match self
                    .handle
                    .block_on(next_offsets(&self.ch, &self.config.consumer.topic))
                {
                    Ok(next) => self
                        .buffer
                        .retain(|(p, o, _)| *o >= next.get(p).copied().unwrap_or(0)),
                    Err(e) => {
                        tracing::warn!(cause = %e, "cannot read the loaded offsets before retrying");
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(self.config.retry_max);
                        if stop.load(Ordering::Relaxed) {
                            return Err(e);
                        }
                        first = false;
                        continue;
                    }
                }
            }
            let (purchases, rejected) = self.batches();
            let attempt = self.handle.block_on(async {
                if rejected.num_rows() > 0 {
                    self.ch
                        .insert(REJECTED, std::slice::from_ref(&rejected))
                        .await?;
                }
                self.ch
                    .insert(PURCHASES, std::slice::from_ref(&purchases))
                    .await
            });
            match attempt {
                Ok(_) => {
                    self.metrics
                        .rows
                        .fetch_add(purchases.num_rows() as u64, Ordering::Relaxed);
                    self.metrics
                        .rejected
                        .fetch_add(rejected.num_rows() as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    self.metrics.failed_inserts.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        tracing::error!(cause = %e, "insert failed while stopping; the events are read again at the next start");
                        return Err(e);
                    }
                    tracing::error!(cause = %e, retry_in_secs = wait.as_secs_f64(), "insert into ClickHouse failed; retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(self.config.retry_max);
                }
            }
        }
        self.metrics.inserts.fetch_add(1, Ordering::Relaxed);
        self.buffer.clear();
        self.oldest = None;
        Ok(())
    }

    /// The buffer as a `purchases` batch and a `purchases_rejected` batch, in offset order.
    fn batches(&self) -> (RecordBatch, RecordBatch) {
        let mut valid = PurchaseBatch::default();
        let (mut days, mut partitions, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        let mut dead = Vec::new();
        for (p, o, row) in &self.buffer {
            match row {
                Ok(purchase) => {
                    valid.push(purchase);
                    days.push((purchase.day() - crate::from_days(0)).num_days() as i32);
                    partitions.push(*p);
                    offsets.push(*o);
                }
                Err(rejected) => dead.push(rejected.clone()),
            }
        }
        let base = valid.finish();
        let topics = StringArray::from(vec![self.config.consumer.topic.as_str(); base.num_rows()]);
        let mut fields: Vec<Field> = base
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<ArrayRef> = base.columns().to_vec();
        fields.extend([
            Field::new("dt", DataType::Date32, false),
            Field::new("kafka_topic", DataType::Utf8, false),
            Field::new("kafka_partition", DataType::Int32, false),
            Field::new("kafka_offset", DataType::Int64, false),
        ]);
        columns.extend([
            Arc::new(Date32Array::from(days)) as ArrayRef,
            Arc::new(topics),
            Arc::new(Int32Array::from(partitions)),
            Arc::new(Int64Array::from(offsets)),
        ]);
        let purchases = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("columns match the fields");
        let lake_form = purchases::rejected_batch(&dead);
        // The lake's dead-letter columns, renamed to the ClickHouse table's.
        let renamed: Vec<Field> = lake_form
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let name = match f.name().as_str() {
                    "topic" => "kafka_topic",
                    "partition" => "kafka_partition",
                    "offset" => "kafka_offset",
                    "key" => "kafka_key",
                    other => other,
                };
                f.as_ref().clone().with_name(name)
            })
            .collect();
        let rejected =
            RecordBatch::try_new(Arc::new(Schema::new(renamed)), lake_form.columns().to_vec())
                .expect("same columns");
        (purchases, rejected)
    }
}

impl Sink for Loader {
    type Error = Error;

    /// Partitions start one past the highest offset in ClickHouse.
    fn start_offsets(&self) -> StartOffset {
        let (ch, topic, handle) = (
            self.ch.clone(),
            self.config.consumer.topic.clone(),
            self.handle.clone(),
        );
        Box::new(move |p| {
            match handle.block_on(next_offsets(&ch, &topic)) {
                Ok(next) => next
                    .get(&p)
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o)),
                Err(e) => {
                    // The loop skips every message below ClickHouse's offset once it can read
                    // it: starting at the beginning re-reads more but never skips a message
                    // (the group's commit could be ahead of a restored ClickHouse).
                    tracing::error!(partition = p, cause = %e, "cannot read the loaded offsets; starting at the beginning");
                    Offset::Beginning
                }
            }
        })
    }

    fn assigned(&mut self, partitions: &[i32], stop: &AtomicBool) -> Result<()> {
        let next = self.next_offsets(stop)?;
        for &p in partitions {
            let start = next.get(&p).copied().unwrap_or(0);
            tracing::info!(partition = p, next_offset = start, "partition assigned");
            self.next.insert(p, start);
        }
        Ok(())
    }

    fn revoked(&mut self, revoked: &[i32]) {
        for p in revoked {
            self.next.remove(p);
        }
        let before = self.buffer.len();
        self.buffer.retain(|(p, _, _)| !revoked.contains(p));
        tracing::info!(
            partitions = ?revoked,
            dropped_unloaded = before - self.buffer.len(),
            "partitions revoked; their next owner re-reads what was not loaded"
        );
        if self.buffer.is_empty() {
            self.oldest = None;
        }
    }

    fn accept(&mut self, message: &BorrowedMessage<'_>) -> Result<()> {
        self.accept_message(message);
        Ok(())
    }

    /// Inserts the buffer once it holds `flush_rows` events or its oldest waited
    /// `flush_interval` (whatever it holds when `all`).
    fn flush(&mut self, all: bool, stop: &AtomicBool) -> Result<Flushed> {
        let due = self.buffer.len() >= self.config.flush_rows.clamp(1, MAX_FLUSH_ROWS)
            || self
                .oldest
                .is_some_and(|t| t.elapsed() >= self.config.flush_interval);
        if self.buffer.is_empty() || !(due || all) {
            return Ok(Flushed::default());
        }
        self.insert(stop)?;
        Ok(Flushed {
            positions: self.positions(),
        })
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.next.iter().map(|(p, next)| (*p, *next)).collect()
    }

    fn report(&self, lag: Option<i64>, elapsed: Duration) {
        let rows = self.metrics.rows.load(Ordering::Relaxed);
        tracing::info!(
            partitions = self.next.len(),
            rows,
            rows_per_sec = (rows as f64 / elapsed.as_secs_f64().max(1e-3)).round(),
            rejected = self.metrics.rejected.load(Ordering::Relaxed),
            inserts = self.metrics.inserts.load(Ordering::Relaxed),
            failed_inserts = self.metrics.failed_inserts.load(Ordering::Relaxed),
            buffered = self.buffer.len(),
            lag = lag.unwrap_or(-1),
            "metrics"
        );
    }
}
