//! PostgreSQL (`[postgres]`), `ingest postgres` and `generate postgres`.

use super::*;

/// Where PostgreSQL is. Every option is also a `SHOP_*` variable and a key of `[postgres]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresArgs {
    /// PostgreSQL URL, e.g. postgres://shop@localhost:5432/shop (DATABASE_URL also works). Put
    /// the password in PGPASSWORD or the URL given by the environment, not in a flag.
    #[arg(long, env = "SHOP_PG_URL", value_name = "URL", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_url: Option<String>,
    /// Seconds to wait for a connection before giving up [default: 10]
    #[arg(long, env = "SHOP_PG_CONNECT_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_connect_timeout_secs: Option<u64>,
}

/// PostgreSQL settings after layering.
#[derive(Debug, Clone)]
pub struct ResolvedPostgres {
    pub url: String,
    pub connect_timeout: Duration,
}

impl PostgresArgs {
    pub fn resolve(&self, file: Option<&Path>) -> anyhow::Result<ResolvedPostgres> {
        self.resolve_optional(file)?.context(
            "no PostgreSQL URL: pass --pg-url, set SHOP_PG_URL or DATABASE_URL, or put \
             pg_url into [postgres] of the configuration file",
        )
    }

    /// The settings if a URL is configured, `None` otherwise.
    pub fn resolve_optional(
        &self,
        file: Option<&Path>,
    ) -> anyhow::Result<Option<ResolvedPostgres>> {
        let merged: PostgresArgs = layered(file, "postgres", self)?;
        let url = merged
            .pg_url
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .filter(|u| !u.trim().is_empty());
        Ok(url.map(|url| ResolvedPostgres {
            url,
            connect_timeout: Duration::from_secs(
                merged.pg_connect_timeout_secs.unwrap_or(10).max(1),
            ),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportMode {
    /// Copy every row.
    Snapshot,
    /// Copy the rows whose updated-column moved past the last export's watermark and merge them
    /// into the previous snapshot (deleted rows are dropped). Falls back to a snapshot when
    /// there is none to merge into.
    Incremental,
}

#[derive(Debug, Args)]
pub struct IngestPostgresArgs {
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Tables to export (schema-qualified or on the search_path); each lands in stage.<name>.
    #[arg(long, value_delimiter = ',', default_values_t = ["customers".to_string(), "sellers".to_string()])]
    pub tables: Vec<String>,
    /// Full snapshot or incremental.
    #[arg(long, value_enum, env = "SHOP_PG_EXPORT_MODE", default_value_t = ExportMode::Snapshot)]
    pub mode: ExportMode,
    /// Column bumped by every change, read by incremental exports.
    #[arg(long, default_value = "updated_at")]
    pub updated_column: String,
    /// Seconds before the watermark an incremental export reads again, so that transactions
    /// committing late are not missed (re-read rows are merged, never duplicated).
    #[arg(long, default_value_t = 300)]
    pub lookback_secs: u64,
    /// Rows per batch handed to the Parquet writer.
    #[arg(long, default_value_t = 65_536)]
    pub batch_rows: usize,
    /// Target size of a snapshot's Parquet files, in MiB.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    pub target_file_mb: u64,
    /// Keep running: export again this many seconds after each round ends, until SIGTERM or
    /// Ctrl-C. A failed round is logged and retried at the next one instead of stopping.
    #[arg(long, env = "SHOP_PG_EXPORT_EVERY_SECS", value_name = "SECS")]
    pub every_secs: Option<u64>,
    /// Touch this file after every round in which all tables were exported (for container
    /// healthchecks: `find FILE -mmin -15`).
    #[arg(long, env = "SHOP_PG_HEALTH_FILE", value_name = "FILE")]
    pub health_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GeneratePostgresArgs {
    #[command(flatten)]
    pub postgres: PostgresArgs,
    /// Customers to generate.
    #[arg(long, default_value_t = 10_000)]
    pub customers: u64,
    /// Sellers to generate.
    #[arg(long, default_value_t = 500)]
    pub sellers: u64,
    /// Seed of the generator: the same seed and counts give the same rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Empty customers and sellers first (without it, tables holding rows are an error).
    #[arg(long)]
    pub replace: bool,
}
