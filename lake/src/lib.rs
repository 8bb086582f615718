//! The shop's lake: one object-store root holding Parquet tables, and the DataFusion
//! catalog that serves them.
//!
//! How this crate is laid out:
//! - [`store`]: turns a [`LakeConfig`] (local folder, `file://` or `s3://bucket/prefix`) into an
//!   object store, registered with DataFusion under the fixed URL `lake://shop/`.
//! - [`layout`]: the naming contract: `stage/<table>/…`, `analytics/<table>/dt=YYYY-MM-DD/…`,
//!   which names are tables and which are hidden.
//! - [`delta`]: every table is a Delta table (delta-rs): opening, writing and committing them.
//! - [`snapshot`]: snapshot tables, rewritten as a whole in one Delta commit.
//! - [`writer`]: streaming Parquet writes (zstd, multipart upload) into the lake; [`reader`]
//!   reads lake files back outside DataFusion.
//! - [`catalog`]: the `shop` catalog with schemas `stage` and `analytics`, discovering tables
//!   and files as they appear, without a restart.

pub mod catalog;
pub mod delta;
pub mod error;
pub mod layout;
pub mod maintain;
pub mod reader;
pub mod session;
pub mod snapshot;
mod sorted;
pub mod store;
pub mod writer;

pub use catalog::{LakeCatalog, LakeCatalogOptions};
pub use error::{Error, Result};
pub use store::{Lake, LakeConfig, S3Config};
