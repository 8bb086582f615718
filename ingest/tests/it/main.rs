//! The ingest crate's integration tests, in one binary.
//!
//! - [`postgres`]: PostgreSQL → lake exports against the real PostgreSQL.
//! - [`products`]: catalogue files of every format, every validation rule.

mod postgres;
mod products;
