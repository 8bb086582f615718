//! The shop's vocabulary, at the bottom of the crate graph: what every other crate agrees on.
//!
//! - [`tables`]: every table of the lake declared once: its schema (`stage`, `analytics`,
//!   `system`), name, Arrow schema where the table has a fixed one, primary key and foreign keys.
//!   The demo generator, the loaders, the API, the aggregates and the Flight SQL metadata
//!   (`GetPrimaryKeys`, `GetImportedKeys`, …) read it; nothing retypes a key.
//! - [`purchases`]: the purchase event contract (JSON version 1), its validation and its Arrow
//!   form, shared by the shop API (which publishes events), the Kafka → lake worker and the
//!   Kafka → ClickHouse loader (which read them).
//! - [`topics`]: the Kafka topic names.
//! - [`report`]: an error printed with its chain of causes.
//!
//! This crate depends on Arrow, chrono, serde, serde_json and uuid only, so that every crate can
//! use it.

pub mod purchases;
pub mod report;
pub mod tables;

pub use tables::{ForeignKey, TABLES, Table};

/// The Kafka topics of the shop.
pub mod topics {
    /// Purchase events ([`crate::purchases`]), published by the shop API and the generator, read
    /// by the lake worker and the ClickHouse loader. Every command that takes a topic defaults to
    /// this one.
    pub const PURCHASES: &str = "purchases";
}
