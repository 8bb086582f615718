//! Ingestion into the shop's lake.
//!
//! How this crate is laid out:
//! - [`postgres`]: PostgreSQL tables exported to snapshot tables of the stage (full or
//!   incremental), the shop's schema migrations and a deterministic generator for them.
//! - [`kafka`]: purchase events from Kafka into `stage.purchases` exactly once, with dead letters,
//!   and a generator of realistic (and deliberately bad) events.
//! - [`products`]: product catalogue files (Parquet, CSV, JSON) validated into `stage.products`,
//!   with per-row reasons for rejected rows.

pub mod kafka;
pub mod postgres;
pub mod products;
