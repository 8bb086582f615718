//! `ingest products`: product catalogue files.

use super::*;

#[derive(Debug, Args)]
pub struct IngestProductsArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    /// The catalogue files (.parquet, .csv, .json, .jsonl, .ndjson): together the whole
    /// catalogue, which replaces stage.products.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Publish when at most this many rows are rejected (they go to stage.products_rejected);
    /// with more, nothing is written.
    #[arg(long, default_value_t = 0)]
    pub max_rejected: u64,
}
