//! Ingestion into the shop's lake.
//!
//! How this crate is laid out:
//! - [`demo`]: a deterministic demo shop (customers, sellers, products, purchases) written into
//!   the stage layer, for `shop-analytics quickstart` and for tests.
//! - [`postgres`]: PostgreSQL tables exported to snapshot tables of the stage (full or
//!   incremental), the shop's schema migrations and a deterministic generator for them.
//!
//! The Kafka and product-file workers land here as they are built.

pub mod demo;
pub mod postgres;
