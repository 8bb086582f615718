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

mod clickhouse;
mod kafka;
mod lake;
mod maintain;
mod postgres;
mod products;
mod refresh;
mod server;

pub use clickhouse::*;
pub use kafka::*;
pub use lake::*;
pub use maintain::*;
pub use postgres::*;
pub use products::*;
pub use refresh::*;
pub use server::*;

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
    /// NOTICE messages are logged by sqlx at info, and the Delta Lake crates log every snapshot
    /// they load at info (and every binary column they keep no statistics for at warn): the
    /// default keeps those quiet.
    #[arg(
        long,
        global = true,
        env = "SHOP_LOG",
        default_value = "info,sqlx=warn,buoyant_kernel=warn,deltalake_core=warn,deltalake_core::writer::stats=error",
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
    /// Compact the small files of every Delta table, write a checkpoint of its log, and delete
    /// the files no version within the retention reads any more.
    Maintain(MaintainArgs),
    /// Load a Kafka topic continuously into a destination other than the lake.
    #[command(subcommand)]
    Stream(StreamCommand),
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Purchase events into the ClickHouse table purchases (each event once, also across
    /// crashes; invalid events into purchases_rejected), until SIGTERM or Ctrl-C.
    Clickhouse(StreamClickhouseArgs),
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
