//! The binary's integration tests, in one test binary: `shop-analytics` run as a process against
//! the real services, killed and restarted.
//!
//! - [`ingest_kafka`]: the Kafka → lake worker killed again and again, and a group of two.
//! - [`ingest_postgres`]: exports, continuous mode, outages and a kill mid-export.
//! - [`refresh_clickhouse`]: the aggregates, the scheduler through a ClickHouse outage, and the
//!   Kafka → ClickHouse loader killed again and again.

mod common;
mod ingest_kafka;
mod ingest_postgres;
mod refresh_clickhouse;
