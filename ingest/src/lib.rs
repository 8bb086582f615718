//! Ingestion into the shop's lake.
//!
//! How this crate is laid out:
//! - [`demo`]: a deterministic demo shop (customers, sellers, products, purchases) written into
//!   the stage layer, for `shop-analytics quickstart` and for tests.
//!
//! The PostgreSQL, Kafka and product-file workers land here as they are built.

pub mod demo;
