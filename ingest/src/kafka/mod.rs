//! Kafka → lake: purchase events into `stage.purchases`, exactly once, with dead letters.
//!
//! The design (docs/KAFKA.md has the full argument):
//! - One consumer of a group, polled on one thread. Messages are decoded and validated as they
//!   arrive and buffered per partition; a partition's buffer is flushed when it holds
//!   `flush_rows` rows or `flush_bytes` bytes, or its oldest message waited `flush_interval`.
//! - A flush of partition `p` covering offsets `start..=end` is one Delta commit to
//!   `stage.purchases` (partitioned by `dt`) that carries the application transaction
//!   `(group, topic, p) = end`, preceded, when the range has invalid events, by one commit of
//!   its dead letters to `stage/_rejected/purchases` with the same transaction id.
//! - The lake, not Kafka, is the source of truth for progress: when a partition is assigned
//!   (start, restart, rebalance), it starts after the transaction version in `stage.purchases`;
//!   the group's committed offset is only a report. A crash before the data commit replays the
//!   range; its dead letters are written again only above the dead-letter table's own version
//!   for the partition. So a crash at any point neither loses a message nor writes one twice.
//! - Each data commit first checks that the partition's transaction is still at the version this
//!   worker committed last; a worker fenced out of its group without noticing finds the new
//!   owner's version and stops writing the partition, and one that races the new owner's
//!   commit loses on the conflict of the same transaction id (Delta's optimistic concurrency,
//!   conditional PUT on S3).
//! - A repeated `purchase_id` (a retried send) within [`DEDUP_WINDOW`] of the first copy is a
//!   dead letter with reason `duplicate purchase_id`: events are keyed by `purchase_id`, so
//!   every copy lands in the same partition, and a new owner loads the ids of the files
//!   committed in the window.

pub mod generate;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use shop_kafka::ConsumerConfig;

/// The lake table purchases land in.
pub const TABLE: &str = shop_types::tables::PURCHASES.name;

/// Errors of the Kafka worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] shop_kafka::Error),
    #[error(transparent)]
    Lake(#[from] shop_lake::Error),
    #[error("Parquet of {path}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
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
    /// Delta commits (data and dead letters).
    pub commits: AtomicU64,
    /// Flushes completed.
    pub flushes: AtomicU64,
    /// Messages behind the high watermark, summed over the assigned partitions (-1: unknown).
    pub lag: AtomicI64,
}

mod partition;
mod progress;
mod worker;

pub use progress::{DEDUP_WINDOW, app_id, data_dir, next_offset, rejected_dir};
pub use worker::Worker;
