//! Command-line options and their layering: a flag beats its `SHOP_*` environment variable,
//! which beats the TOML file given by `--config`, which beats the built-in default.
//!
//! The TOML file has one table per group, with the flag names in snake case:
//!
//! ```toml
//! [lake]
//! lake = "s3://shop-lake/prod"
//! s3_endpoint = "http://minio:9000"
//! s3_allow_http = true
//!
//! [server]
//! listen = "0.0.0.0:50051"
//! query_timeout_secs = 120
//!
//! [clickhouse]
//! clickhouse_url = "http://clickhouse:8123"
//!
//! [refresh]
//! refresh_schedule = "0 1 * * *"
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shop_lake::{LakeCatalogOptions, LakeConfig, S3Config};
use shop_server::{AuthConfig, ConnectionLimits, Limits, ServerConfig, TlsConfig};

/// The shop's lakehouse: ingestion into a Parquet lake, a Flight SQL server over it, and daily
/// aggregates.
#[derive(Debug, Parser)]
#[command(name = "shop-analytics", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file with [lake], [server], [postgres], [kafka], [clickhouse] and
    /// [refresh] tables; flags and SHOP_* variables override it.
    #[arg(long, global = true, env = "SHOP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter, in tracing's EnvFilter syntax (e.g. "info,shop_server=debug"). PostgreSQL's
    /// NOTICE messages are logged by sqlx at info: "info,sqlx=warn" (the default) hides them.
    #[arg(
        long,
        global = true,
        env = "SHOP_LOG",
        default_value = "info,sqlx=warn",
        value_name = "FILTER"
    )]
    pub log_filter: String,
    /// Log format.
    #[arg(long, global = true, env = "SHOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a demo shop into a local lake (if it is empty), build the daily aggregates and
    /// serve them over Flight SQL. Needs no external service.
    Quickstart(QuickstartArgs),
    /// Serve an existing lake over Flight SQL.
    Serve(ServeArgs),
    /// Write generated data into the lake or the source systems.
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Copy data from a source system into the lake's stage layer.
    #[command(subcommand)]
    Ingest(IngestCommand),
    /// Compute the daily aggregates of days into the lake and ClickHouse, and copy the
    /// dimensions to ClickHouse; every run is recorded in system.refresh_runs.
    Refresh(RefreshArgs),
    /// Load a Kafka topic continuously into a destination other than the lake.
    #[command(subcommand)]
    Stream(StreamCommand),
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// The day to refresh (YYYY-MM-DD) [default: yesterday, UTC]
    #[arg(long, conflicts_with_all = ["from", "to", "all_days"])]
    pub date: Option<chrono::NaiveDate>,
    /// First day of a range (with --to).
    #[arg(long, requires = "to")]
    pub from: Option<chrono::NaiveDate>,
    /// Last day of a range, included (with --from).
    #[arg(long, requires = "from")]
    pub to: Option<chrono::NaiveDate>,
    /// Every day that has purchases in the stage.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub all_days: bool,
    /// Only these tables (aggregates such as daily_sales, dimensions such as customers),
    /// comma-separated [default: all]
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Purchase events into the ClickHouse table purchases (each event once, also across
    /// crashes; invalid events into purchases_rejected), until SIGTERM or Ctrl-C.
    Clickhouse(StreamClickhouseArgs),
}

#[derive(Debug, Args)]
pub struct StreamClickhouseArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// Topic of the purchase events.
    #[arg(long, env = "SHOP_KAFKA_TOPIC", default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Consumer group, apart from the lake worker's.
    #[arg(
        long,
        env = "SHOP_STREAM_GROUP",
        default_value = "shop-stream-clickhouse"
    )]
    pub group: String,
    /// Insert once this many events are buffered.
    #[arg(long, default_value_t = 50_000)]
    pub flush_rows: usize,
    /// … or when the oldest buffered event waited this long.
    #[arg(long, env = "SHOP_STREAM_FLUSH_INTERVAL_MS", default_value_t = 1_000)]
    pub flush_interval_ms: u64,
    /// Consumer group session timeout.
    #[arg(long, env = "SHOP_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u32,
    /// How often to log the metrics.
    #[arg(long, default_value_t = 10)]
    pub metrics_interval_secs: u64,
    /// Touch this file at every metrics tick (container healthchecks).
    #[arg(long, env = "SHOP_STREAM_HEALTH_FILE", value_name = "FILE")]
    pub health_file: Option<PathBuf>,
}

/// Where ClickHouse is. Also `SHOP_CLICKHOUSE_*` variables and keys of `[clickhouse]`; the
/// password only comes from `SHOP_CLICKHOUSE_PASSWORD`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL, e.g. http://localhost:8123; without it aggregates go to the lake only
    #[arg(long, env = "SHOP_CLICKHOUSE_URL", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_url: Option<String>,
    /// ClickHouse user [default: default]
    #[arg(long, env = "SHOP_CLICKHOUSE_USER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_user: Option<String>,
    /// ClickHouse database of the tables (created if missing) [default: shop]
    #[arg(long, env = "SHOP_CLICKHOUSE_DATABASE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_database: Option<String>,
    /// Longest a ClickHouse statement or insert may take [default: 300]
    #[arg(long, env = "SHOP_CLICKHOUSE_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_timeout_secs: Option<u64>,
}

impl ClickHouseArgs {
    /// The ClickHouse settings after layering; `None` without a URL.
    pub fn resolve(
        &self,
        file: Option<&Path>,
    ) -> anyhow::Result<Option<shop_aggregates::clickhouse::ClickHouseConfig>> {
        let merged: ClickHouseArgs = layered(file, "clickhouse", self)?;
        let Some(url) = merged.clickhouse_url else {
            return Ok(None);
        };
        let mut config = shop_aggregates::clickhouse::ClickHouseConfig::new(url);
        if let Some(user) = merged.clickhouse_user {
            config.user = user;
        }
        if let Some(database) = merged.clickhouse_database {
            config.database = database;
        }
        if let Some(secs) = merged.clickhouse_timeout_secs {
            config.timeout = Duration::from_secs(secs.max(1));
        }
        config.password = std::env::var("SHOP_CLICKHOUSE_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        Ok(Some(config))
    }
}

/// The refresh scheduler of `serve`. Also `SHOP_REFRESH_*` variables and keys of `[refresh]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshScheduleArgs {
    /// When to refresh the day before, as a five-field cron expression in UTC, or "off"
    /// [default: "0 1 * * *"]
    #[arg(long, env = "SHOP_REFRESH_SCHEDULE", value_name = "CRON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_schedule: Option<String>,
    /// At start, refresh each of this many days before today that has no successful run
    /// [default: 7]
    #[arg(long, env = "SHOP_REFRESH_CATCH_UP_DAYS", value_name = "DAYS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_catch_up_days: Option<u32>,
    /// First wait before retrying a failed run; doubles per try [default: 60]
    #[arg(long, env = "SHOP_REFRESH_RETRY_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_retry_secs: Option<u64>,
    /// Longest wait between tries [default: 3600]
    #[arg(long, env = "SHOP_REFRESH_RETRY_MAX_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_retry_max_secs: Option<u64>,
    /// Tries of one run in all [default: 8]
    #[arg(long, env = "SHOP_REFRESH_MAX_ATTEMPTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_max_attempts: Option<u32>,
}

impl RefreshScheduleArgs {
    /// The schedule after layering; `None` when switched off.
    pub fn resolve(
        &self,
        file: Option<&Path>,
    ) -> anyhow::Result<Option<shop_aggregates::schedule::ScheduleConfig>> {
        let merged: RefreshScheduleArgs = layered(file, "refresh", self)?;
        let cron = merged
            .refresh_schedule
            .unwrap_or_else(|| shop_aggregates::schedule::DEFAULT_CRON.to_string());
        if cron.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let mut config = shop_aggregates::schedule::ScheduleConfig::new(&cron)?;
        if let Some(days) = merged.refresh_catch_up_days {
            config.catch_up_days = days;
        }
        if let Some(secs) = merged.refresh_retry_secs {
            config.retry_initial = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = merged.refresh_retry_max_secs {
            config.retry_max = Duration::from_secs(secs.max(1));
        }
        if let Some(n) = merged.refresh_max_attempts {
            config.max_attempts = n.max(1);
        }
        Ok(Some(config))
    }
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Size of the demo shop: 1.0 is ~10k customers, 500 sellers, 5k products and ~1M
    /// purchases over 90 days.
    #[arg(long, env = "SHOP_DEMO_SCALE", default_value_t = 1.0)]
    pub scale: f64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub api: ShopApiArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub schedule: RefreshScheduleArgs,
}

/// The backends of the shop API (gRPC and REST): sellers and customers in PostgreSQL, new
/// purchases published to Kafka. Without them those calls answer FAILED_PRECONDITION.
#[derive(Debug, Args)]
pub struct ShopApiArgs {
    #[command(flatten)]
    pub postgres: PostgresArgs,
    /// Kafka brokers that CreatePurchase publishes to, e.g. localhost:9092 (also the
    /// kafka_brokers key of [kafka]) [default: none, creating purchases is off]
    #[arg(long, env = "SHOP_KAFKA_BROKERS", value_name = "HOST:PORT,…")]
    pub kafka_brokers: Option<String>,
    /// Topic that CreatePurchase publishes to (created if missing).
    #[arg(long, env = "SHOP_KAFKA_TOPIC", default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Longest wait for Kafka to acknowledge a new purchase before the call answers
    /// UNAVAILABLE, in milliseconds.
    #[arg(long, env = "SHOP_PUBLISH_TIMEOUT_MS", default_value_t = 10_000)]
    pub publish_timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// The deterministic demo shop (customers, sellers, products, purchases) into the stage.
    Demo {
        #[command(flatten)]
        lake: LakeArgs,
        /// Size of the demo shop (1.0 ≈ 1M purchases).
        #[arg(long, env = "SHOP_DEMO_SCALE", default_value_t = 1.0)]
        scale: f64,
    },
    /// Deterministic customers and sellers into PostgreSQL (applies the schema migrations first).
    Postgres(GeneratePostgresArgs),
    /// Purchase events onto a Kafka topic, optionally with deliberately bad ones.
    Kafka(GenerateKafkaArgs),
}

#[derive(Debug, Args)]
pub struct GenerateKafkaArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic to write to (created with --partitions if missing).
    #[arg(long, default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Events to send.
    #[arg(long)]
    pub count: u64,
    /// Fraction of events that are deliberately invalid (0.0 – 1.0): malformed JSON, wrong
    /// types, bad values, unknown fields, empty messages and repeated purchase ids.
    #[arg(long, default_value_t = 0.0)]
    pub poison_rate: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
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

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Export PostgreSQL tables to stage.<table> snapshot tables, in full or incrementally.
    Postgres(IngestPostgresArgs),
    /// Consume purchase events into stage.purchases (exactly once; invalid events go to
    /// stage.purchases_rejected), until SIGTERM or Ctrl-C.
    Kafka(IngestKafkaArgs),
    /// Load product catalogue files (Parquet, CSV, JSON lines) as the new stage.products,
    /// validating every row; rejected rows are reported and kept in stage.products_rejected.
    Products(IngestProductsArgs),
}

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

#[derive(Debug, Args)]
pub struct IngestKafkaArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Topic of the purchase events.
    #[arg(long, env = "SHOP_KAFKA_TOPIC", default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Consumer group; workers of one group share the partitions.
    #[arg(
        long,
        env = "SHOP_KAFKA_GROUP",
        default_value = "shop-ingest-purchases"
    )]
    pub group: String,
    /// Flush a partition once it holds this many events.
    #[arg(long, env = "SHOP_KAFKA_FLUSH_ROWS", default_value_t = 50_000)]
    pub flush_rows: usize,
    /// … or this many payload bytes, e.g. 32MiB.
    #[arg(long, env = "SHOP_KAFKA_FLUSH_BYTES", default_value = "32MiB")]
    pub flush_bytes: String,
    /// … or when its oldest event waited this long (what keeps data fresh).
    #[arg(long, env = "SHOP_KAFKA_FLUSH_INTERVAL_MS", default_value_t = 2_000)]
    pub flush_interval_ms: u64,
    /// Consumer group session timeout.
    #[arg(long, env = "SHOP_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u32,
    /// How often to log the metrics (rows, rows/s, files, rejects, lag).
    #[arg(long, default_value_t = 10)]
    pub metrics_interval_secs: u64,
    /// Touch this file at every metrics tick while consuming (container healthchecks).
    #[arg(long, env = "SHOP_KAFKA_HEALTH_FILE", value_name = "FILE")]
    pub health_file: Option<PathBuf>,
}

/// Where Kafka is. Also `SHOP_KAFKA_BROKERS` and a key of `[kafka]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaArgs {
    /// Bootstrap brokers, e.g. localhost:9092 [default: 127.0.0.1:9092]
    #[arg(long, env = "SHOP_KAFKA_BROKERS", value_name = "HOST:PORT,…")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
}

impl KafkaArgs {
    pub fn resolve(&self, file: Option<&Path>) -> anyhow::Result<String> {
        Ok(self
            .resolve_optional(file)?
            .unwrap_or_else(|| "127.0.0.1:9092".to_string()))
    }

    /// The brokers if any are configured, `None` otherwise.
    pub fn resolve_optional(&self, file: Option<&Path>) -> anyhow::Result<Option<String>> {
        let merged: KafkaArgs = layered(file, "kafka", self)?;
        Ok(merged.kafka_brokers.filter(|b| !b.trim().is_empty()))
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
    /// Rows per Parquet file of a snapshot.
    #[arg(long, default_value_t = 1_048_576)]
    pub rows_per_file: u64,
    /// Keep running: export again this many seconds after each round ends, until SIGTERM or
    /// Ctrl-C. A failed round is logged and retried at the next one instead of stopping.
    #[arg(long, env = "SHOP_PG_EXPORT_EVERY_SECS", value_name = "SECS")]
    pub every_secs: Option<u64>,
    /// Touch this file after every round in which all tables were exported (for container
    /// healthchecks: `find FILE -mmin -15`).
    #[arg(long, env = "SHOP_PG_HEALTH_FILE", value_name = "FILE")]
    pub health_file: Option<PathBuf>,
}

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

/// Where the lake is. Every option is also a `SHOP_*` variable and a key of `[lake]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeArgs {
    /// Lake root: a local folder, a file:// URL or s3://bucket/prefix [default: ./lake-data]
    #[arg(long, env = "SHOP_LAKE", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lake: Option<String>,
    /// S3 endpoint for S3-compatible stores such as MinIO (AWS_ENDPOINT_URL also works).
    #[arg(long, env = "SHOP_S3_ENDPOINT", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 region (AWS_REGION also works).
    #[arg(long, env = "SHOP_S3_REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3 access key id (AWS_ACCESS_KEY_ID also works). The secret key is read from
    /// SHOP_S3_SECRET_ACCESS_KEY or AWS_SECRET_ACCESS_KEY only, never a flag or the file.
    #[arg(long, env = "SHOP_S3_ACCESS_KEY_ID", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_access_key_id: Option<String>,
    /// Allow plain-HTTP S3 endpoints (MinIO in docker-compose, local tests).
    #[arg(long, env = "SHOP_S3_ALLOW_HTTP", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_allow_http: Option<bool>,
}

/// The Flight SQL server's options. Every option is also a `SHOP_*` variable and a key of
/// `[server]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerArgs {
    /// Address of the gRPC port (Flight SQL) [default: 127.0.0.1:50051]
    #[arg(long, env = "SHOP_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Write the bound address to this file once the server accepts connections.
    #[arg(long, env = "SHOP_READY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_file: Option<PathBuf>,
    /// Address of the REST/JSON gateway of the shop API, or "off" [default: 127.0.0.1:8000]
    #[arg(long, env = "SHOP_HTTP_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// Write the REST gateway's bound address to this file once it accepts connections.
    #[arg(long, env = "SHOP_HTTP_READY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_ready_file: Option<PathBuf>,
    /// File of user:password lines; turns authentication on. SHOP_AUTH_USERS
    /// ("alice:secret,bob:pw") does the same from the environment.
    #[arg(long, env = "SHOP_AUTH_USERS_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_users_file: Option<PathBuf>,
    /// Roles of users who are more than readers: "bob=writer,root=admin". Readers run SQL and
    /// read the shop API; writers also create purchases and sellers; admins may do everything.
    #[arg(long, env = "SHOP_AUTH_ROLES", value_name = "USER=ROLE,…")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_roles: Option<String>,
    /// Lifetime of a bearer token issued by Handshake, in seconds, at most a year [default: 43200]
    #[arg(long, env = "SHOP_AUTH_TOKEN_TTL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token_ttl_secs: Option<u64>,
    /// TLS certificate chain (PEM); with --tls-key turns TLS on.
    #[arg(long, env = "SHOP_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SHOP_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Memory one query may use before it spills to disk or fails, e.g. 512MiB, 2GiB [default: 2GiB]
    #[arg(long, env = "SHOP_QUERY_MEMORY_LIMIT", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_memory_limit: Option<String>,
    /// Disk one query may fill with spill files before it fails, e.g. 4GiB [default: 8GiB]
    #[arg(long, env = "SHOP_QUERY_SPILL_LIMIT", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_spill_limit: Option<String>,
    /// Largest output of one call of repeat, lpad, rpad, replace, regexp_replace, array_repeat,
    /// array_resize, range or generate_series for one batch, e.g. 16MiB [default: 64MiB]
    #[arg(long, env = "SHOP_MAX_FUNCTION_OUTPUT", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_function_output: Option<String>,
    /// Time limit of one query, planning to last row, in seconds [default: 300]
    #[arg(long, env = "SHOP_QUERY_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_timeout_secs: Option<u64>,
    /// Queries running at once; more wait in the queue [default: 8]
    #[arg(long, env = "SHOP_MAX_CONCURRENT_QUERIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_queries: Option<usize>,
    /// Queries that may wait for a running one to end (the wait counts in the time limit);
    /// beyond them RESOURCE_EXHAUSTED; 0 refuses instead of waiting [default: 64]
    #[arg(long, env = "SHOP_MAX_QUEUED_QUERIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued_queries: Option<usize>,
    /// Rows one result may have [default: unlimited]
    #[arg(long, env = "SHOP_MAX_RESULT_ROWS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_result_rows: Option<u64>,
    /// Size one result may have in memory, e.g. 1GiB [default: 8GiB]
    #[arg(long, env = "SHOP_MAX_RESULT_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_result_bytes: Option<String>,
    /// While a query has produced nothing for this many seconds, an empty batch keeps the stream
    /// alive through proxies [default: 5]
    #[arg(long, env = "SHOP_IDLE_KEEPALIVE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_keepalive_secs: Option<u64>,
    /// Connections each port (gRPC, REST) keeps open at once; more are closed at once
    /// [default: 384]
    #[arg(long, env = "SHOP_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// A connection that neither reads nor writes for this many seconds is closed [default: 300]
    #[arg(long, env = "SHOP_CONNECTION_IDLE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_idle_secs: Option<u64>,
    /// On SIGTERM, seconds running calls may go on before their queries are cancelled
    /// [default: 10]
    #[arg(long, env = "SHOP_SHUTDOWN_GRACE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_secs: Option<u64>,
    /// How often the catalog looks for new tables and snapshots, in milliseconds [default: 2000]
    #[arg(long, env = "SHOP_CATALOG_REFRESH_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_refresh_ms: Option<u64>,
}

/// Merges a group of options from the config file's `[section]` under the command line.
fn layered<T: Serialize + DeserializeOwned>(
    file: Option<&Path>,
    section: &str,
    cli: &T,
) -> anyhow::Result<T> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            bail!("the configuration file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment
        .merge(Serialized::defaults(cli).key(section))
        .extract_inner(section)
        .with_context(|| match file {
            Some(path) => format!("invalid [{section}] options in {}", path.display()),
            None => format!("invalid {section} options"),
        })
}

impl LakeArgs {
    /// The lake configuration after layering; `default_root` when no lake is given.
    pub fn resolve(&self, file: Option<&Path>, default_root: &str) -> anyhow::Result<LakeConfig> {
        let merged: LakeArgs = layered(file, "lake", self)?;
        let secret = std::env::var("SHOP_S3_SECRET_ACCESS_KEY").ok();
        Ok(LakeConfig {
            root: merged.lake.unwrap_or_else(|| default_root.to_string()),
            s3: S3Config {
                endpoint: merged.s3_endpoint,
                region: merged.s3_region,
                access_key_id: merged.s3_access_key_id,
                secret_access_key: secret,
                allow_http: merged.s3_allow_http.unwrap_or(false),
            },
        })
    }
}

/// The server configuration with defaults applied, plus where to write the ready file.
#[derive(Debug)]
pub struct ResolvedServer {
    pub config: ServerConfig,
    pub ready_file: Option<PathBuf>,
    pub http_ready_file: Option<PathBuf>,
}

impl ServerArgs {
    pub fn resolve(&self, file: Option<&Path>) -> anyhow::Result<ResolvedServer> {
        let m: ServerArgs = layered(file, "server", self)?;
        let mut users = HashMap::new();
        if let Ok(text) = std::env::var("SHOP_AUTH_USERS") {
            users.extend(
                AuthConfig::parse_users(&text)
                    .map_err(|e| anyhow::anyhow!("SHOP_AUTH_USERS: {e}"))?,
            );
        }
        if let Some(path) = &m.auth_users_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the users file {}", path.display()))?;
            users.extend(
                AuthConfig::parse_users(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
        }
        let tls = match (m.tls_cert, m.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
            (None, None) => None,
            _ => bail!("TLS needs both tls_cert and tls_key"),
        };
        let defaults = Limits::default();
        let bytes = |value: &Option<String>, name: &str| -> anyhow::Result<Option<u64>> {
            value
                .as_deref()
                .map(|v| parse_bytes(v).with_context(|| format!("invalid {name} {v:?}")))
                .transpose()
        };
        let limits = Limits {
            memory_per_query: bytes(&m.query_memory_limit, "query_memory_limit")?
                .map_or(defaults.memory_per_query, |b| b as usize),
            spill_per_query: bytes(&m.query_spill_limit, "query_spill_limit")?
                .unwrap_or(defaults.spill_per_query),
            max_function_output: bytes(&m.max_function_output, "max_function_output")?
                .unwrap_or(defaults.max_function_output),
            query_timeout: m
                .query_timeout_secs
                .map_or(defaults.query_timeout, Duration::from_secs),
            max_concurrent_queries: m
                .max_concurrent_queries
                .unwrap_or(defaults.max_concurrent_queries),
            max_queued_queries: m.max_queued_queries.unwrap_or(defaults.max_queued_queries),
            max_result_rows: m.max_result_rows.or(defaults.max_result_rows),
            max_result_bytes: bytes(&m.max_result_bytes, "max_result_bytes")?
                .or(defaults.max_result_bytes),
            idle_keepalive: m
                .idle_keepalive_secs
                .map_or(defaults.idle_keepalive, |s| Duration::from_secs(s.max(1))),
        };
        if !(1..=1024).contains(&limits.max_concurrent_queries) {
            bail!("max_concurrent_queries must be between 1 and 1024");
        }
        if limits.max_queued_queries > 65_536 {
            bail!("max_queued_queries must be between 0 and 65536");
        }
        if limits.query_timeout.is_zero() || limits.query_timeout > Duration::from_secs(7 * 86_400)
        {
            bail!("query_timeout_secs must be between 1 and 604800 (a week)");
        }
        let connection_defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            max_connections: m
                .max_connections
                .unwrap_or(connection_defaults.max_connections),
            idle_timeout: m
                .connection_idle_secs
                .map_or(connection_defaults.idle_timeout, Duration::from_secs),
            ..connection_defaults
        };
        if !(1..=1_000_000).contains(&connections.max_connections) {
            bail!("max_connections must be between 1 and 1000000");
        }
        if !(1..=86_400).contains(&connections.idle_timeout.as_secs()) {
            bail!("connection_idle_secs must be between 1 and 86400");
        }
        let shutdown_grace = Duration::from_secs(m.shutdown_grace_secs.unwrap_or(10));
        if shutdown_grace > Duration::from_secs(3600) {
            bail!("shutdown_grace_secs must be at most 3600");
        }
        let roles = match &m.auth_roles {
            Some(text) => {
                AuthConfig::parse_roles(text).map_err(|e| anyhow::anyhow!("auth_roles: {e}"))?
            }
            None => HashMap::new(),
        };
        let auth = AuthConfig {
            users,
            roles,
            token_ttl: Duration::from_secs(m.auth_token_ttl_secs.unwrap_or(12 * 3600)),
        };
        if !auth.users.is_empty() || !auth.roles.is_empty() || m.auth_token_ttl_secs.is_some() {
            auth.validate().map_err(|e| anyhow::anyhow!(e))?;
        }
        let http_listen = match m.http_listen.as_deref().map(str::trim) {
            None => Some("127.0.0.1:8000".parse().expect("valid address")),
            Some(off) if off.eq_ignore_ascii_case("off") => None,
            Some(addr) => Some(
                addr.parse::<SocketAddr>()
                    .with_context(|| format!("invalid http_listen {addr:?} (HOST:PORT or off)"))?,
            ),
        };
        let mut catalog = LakeCatalogOptions::default();
        if let Some(ms) = m.catalog_refresh_ms {
            catalog.refresh_interval = Duration::from_millis(ms.max(100));
        }
        Ok(ResolvedServer {
            config: ServerConfig {
                listen: m
                    .listen
                    .unwrap_or_else(|| "127.0.0.1:50051".parse().expect("valid address")),
                auth,
                tls,
                limits,
                connections,
                shutdown_grace,
                catalog,
                http_listen,
            },
            ready_file: m.ready_file,
            http_ready_file: m.http_ready_file,
        })
    }
}

/// Parses a byte size: `1073741824`, `512MiB`, `2GiB`, `1.5GB`, `64k`.
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("{text:?} does not start with a number"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => bail!("unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"),
    };
    let value = number * factor as f64;
    if !value.is_finite() || value < 1.0 {
        bail!("{text:?} is not a positive size");
    }
    Ok(value as u64)
}

/// Installs the log subscriber: plain or JSON lines on stderr.
pub fn init_logging(args: &GlobalArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5 GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("64k").unwrap(), 64_000);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("0").is_err());
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.toml");
        std::fs::write(
            &path,
            "[lake]\nlake = \"s3://from-file/x\"\ns3_region = \"eu-west-1\"\n\
             [server]\nquery_timeout_secs = 7\nmax_concurrent_queries = 3\nquery_memory_limit = \"1GiB\"\n",
        )
        .unwrap();
        let cli_lake = LakeArgs {
            lake: Some("/from/flag".into()),
            ..Default::default()
        };
        let lake = cli_lake.resolve(Some(&path), "./lake-data").unwrap();
        assert_eq!(lake.root, "/from/flag");
        assert_eq!(lake.s3.region.as_deref(), Some("eu-west-1"));

        let cli_server = ServerArgs {
            max_concurrent_queries: Some(5),
            ..Default::default()
        };
        let server = cli_server.resolve(Some(&path)).unwrap().config;
        assert_eq!(server.limits.query_timeout, Duration::from_secs(7));
        assert_eq!(server.limits.max_concurrent_queries, 5);
        assert_eq!(server.limits.memory_per_query, 1 << 30);
        assert_eq!(server.listen, "127.0.0.1:50051".parse().unwrap());

        let defaults = LakeArgs::default().resolve(None, "./lake-data").unwrap();
        assert_eq!(defaults.root, "./lake-data");
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.toml");
        std::fs::write(&path, "[server]\nquery_timout_secs = 7\n").unwrap();
        let err = ServerArgs::default().resolve(Some(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("query_timout_secs"), "{err:#}");
        let err = ServerArgs::default()
            .resolve(Some(&dir.path().join("missing.toml")))
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn tls_needs_both_files() {
        let args = ServerArgs {
            tls_cert: Some("cert.pem".into()),
            ..Default::default()
        };
        assert!(args.resolve(None).is_err());
    }
}
