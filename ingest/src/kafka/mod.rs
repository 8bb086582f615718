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
    #[error("the offsets marker {path} is corrupt")]
    Marker {
        path: String,
        #[source]
        source: serde_json::Error,
    },
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
    /// Parquet objects written (data and dead letters).
    pub files: AtomicU64,
    /// Flushes completed.
    pub flushes: AtomicU64,
    /// Messages behind the high watermark, summed over the assigned partitions (-1: unknown).
    pub lag: AtomicI64,
}

mod marker;
mod partition;
mod worker;

pub use marker::{DEDUP_WINDOW, Marker, marker_path, object_name, read_marker, rejected_dir};
pub use worker::Worker;
