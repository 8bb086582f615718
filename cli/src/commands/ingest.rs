//! `shop-analytics ingest …` and `generate postgres`: source systems into the lake.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use shop_ingest::kafka;
use shop_ingest::postgres::{self, ExportOptions, Mode, PgPool, generate::GenerateSpec};

use super::serve;
use crate::config::{
    ExportMode, GenerateKafkaArgs, GeneratePostgresArgs, IngestKafkaArgs, IngestPostgresArgs,
    IngestProductsArgs, ResolvedPostgres, parse_bytes,
};
use crate::progress::RowProgress;

async fn connect(pg: &ResolvedPostgres) -> anyhow::Result<PgPool> {
    Ok(postgres::connect(&pg.url, pg.connect_timeout).await?)
}

/// `ingest postgres`: every table exported in turn; a failure stops the round with nothing of
/// that table published. With `--every-secs` rounds repeat until a shutdown signal.
pub async fn postgres(args: IngestPostgresArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let pg = args.postgres.resolve(file)?;
    let mut lake_names = std::collections::BTreeMap::new();
    for table in &args.tables {
        let name = postgres::lake_table_name(table)?;
        if let Some(other) = lake_names.insert(name.clone(), table) {
            anyhow::bail!(
                "{other} and {table} would both land in stage.{name}; export them separately"
            );
        }
    }
    let lake = serve::open_lake(&args.lake, file).await?;
    let options = ExportOptions {
        mode: match args.mode {
            ExportMode::Snapshot => Mode::Snapshot,
            ExportMode::Incremental => Mode::Incremental,
        },
        batch_rows: args.batch_rows.max(1),
        updated_column: args.updated_column.clone(),
        lookback: Duration::from_secs(args.lookback_secs),
        target_file_bytes: args.target_file_mb.max(1) << 20,
    };
    let Some(every) = args.every_secs else {
        let pool = connect(&pg).await?;
        let result = export_round(&pool, &lake, &args.tables, &options).await;
        pool.close().await;
        result?;
        return touch(args.health_file.as_deref());
    };
    let every = Duration::from_secs(every.max(1));
    let mut shutdown = std::pin::pin!(serve::shutdown_signal());
    let mut pool = None;
    loop {
        let round = async {
            if pool.is_none() {
                pool = Some(connect(&pg).await?);
            }
            let pool = pool.as_ref().expect("connected above");
            export_round(pool, &lake, &args.tables, &options).await
        };
        tokio::select! {
            result = round => match result {
                Ok(()) => touch(args.health_file.as_deref())?,
                Err(e) => tracing::error!("export round failed, retrying in {}s: {e:#}", every.as_secs()),
            },
            () = &mut shutdown => break,
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut shutdown => break,
        }
    }
    if let Some(pool) = pool {
        pool.close().await;
    }
    Ok(())
}

async fn export_round(
    pool: &PgPool,
    lake: &shop_lake::Lake,
    tables: &[String],
    options: &ExportOptions,
) -> anyhow::Result<()> {
    for table in tables {
        let progress = RowProgress::start(table.clone(), None);
        let result = postgres::export_table(pool, lake, table, options, progress.counter()).await;
        progress.finish();
        let report = result.with_context(|| {
            format!("exporting {table} failed; the lake still holds its previous snapshot")
        })?;
        eprintln!(
            "{table} → stage.{}: {} export, {} rows read, {} rows in the snapshot{} \
             (version {}) in {:.1}s ({:.0} rows/s)",
            report.lake_table,
            report.mode.as_str(),
            report.rows_read,
            report.rows_total,
            if report.rows_deleted > 0 {
                format!(", {} deleted rows removed", report.rows_deleted)
            } else {
                String::new()
            },
            report.version,
            report.elapsed.as_secs_f64(),
            report.rows_read as f64 / report.elapsed.as_secs_f64().max(1e-3),
        );
    }
    Ok(())
}

/// Sets the health file's modification time to now.
fn touch(path: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, unix_seconds_line())
            .with_context(|| format!("cannot write the health file {}", path.display()))?;
    }
    Ok(())
}

fn unix_seconds_line() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{secs}\n")
}

/// `generate postgres`: migrations, then deterministic customers and sellers.
pub async fn generate_postgres(
    args: GeneratePostgresArgs,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let pg = args.postgres.resolve(file)?;
    let pool = connect(&pg).await?;
    let spec = GenerateSpec {
        customers: args.customers,
        sellers: args.sellers,
        seed: args.seed,
        replace: args.replace,
    };
    let started = std::time::Instant::now();
    let progress = RowProgress::start("rows".into(), Some(spec.customers + spec.sellers));
    let result = postgres::generate::generate(&pool, &spec, progress.counter()).await;
    progress.finish();
    result?;
    eprintln!(
        "Generated {} customers and {} sellers in {} in {:.1}s.",
        spec.customers,
        spec.sellers,
        postgres::redact(&pg.url),
        started.elapsed().as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

/// `ingest kafka`: the worker on a blocking thread until SIGTERM / Ctrl-C, then a final flush.
pub async fn kafka(args: IngestKafkaArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let brokers = args.kafka.resolve(file)?;
    let lake = serve::open_lake(&args.lake, file).await?;
    let mut config = kafka::WorkerConfig::new(&brokers, &args.topic, &args.group);
    config.flush_rows = args.flush_rows.max(1);
    config.flush_bytes = parse_bytes(&args.flush_bytes)
        .with_context(|| format!("invalid --flush-bytes {:?}", args.flush_bytes))?
        as usize;
    config.flush_interval = Duration::from_millis(args.flush_interval_ms.max(10));
    config.consumer.session_timeout_ms = args.session_timeout_ms;
    config.consumer.metrics_interval = Duration::from_secs(args.metrics_interval_secs.max(1));
    config.consumer.health_file = args.health_file;
    let metrics = std::sync::Arc::new(kafka::Metrics::default());
    let worker = kafka::Worker::new(
        lake,
        config,
        tokio::runtime::Handle::current(),
        std::sync::Arc::clone(&metrics),
    );
    super::run_until_signal("Kafka worker", move |stop| worker.run(stop)).await?;
    eprintln!(
        "Stopped: {} purchases, {} dead letters in {} commits.",
        metrics.rows.load(std::sync::atomic::Ordering::Relaxed),
        metrics.rejected.load(std::sync::atomic::Ordering::Relaxed),
        metrics.commits.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// `ingest products`: the catalogue files as the new stage.products.
pub async fn products(args: IngestProductsArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let lake = serve::open_lake(&args.lake, file).await?;
    let report = shop_ingest::products::load(&lake, &args.files, args.max_rejected).await?;
    if !report.ignored_columns.is_empty() {
        eprintln!(
            "Ignored columns that stage.products does not have: {}.",
            report.ignored_columns.join(", ")
        );
    }
    eprintln!(
        "Loaded {} of {} rows into stage.products (version {}).",
        report.loaded, report.rows, report.version
    );
    if !report.rejected.is_empty() {
        eprintln!(
            "{} rows rejected, kept in stage.products_rejected (load_id '{}'):",
            report.rejected.len(),
            report.load_id
        );
        for r in report.rejected.iter().take(20) {
            eprintln!("  {}:{}: {}", r.file, r.row, r.reason);
        }
    }
    Ok(())
}

/// `generate kafka`: events onto the topic (created if missing).
pub async fn generate_kafka(args: GenerateKafkaArgs, file: Option<&Path>) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.poison_rate) {
        anyhow::bail!("--poison-rate must be between 0 and 1");
    }
    let brokers = args.kafka.resolve(file)?;
    shop_kafka::admin::ensure_topic(&brokers, &args.topic, args.partitions).await?;
    let events: Vec<_> =
        kafka::generate::events(args.seed, args.count, args.poison_rate, chrono::Utc::now())
            .collect();
    let poison = events
        .iter()
        .filter(|e| matches!(e.expected, kafka::generate::Expected::Poison { .. }))
        .count();
    let started = std::time::Instant::now();
    let progress = RowProgress::start("events".into(), Some(args.count));
    let counter = std::sync::Arc::clone(progress.counter());
    let result = kafka::generate::produce(&brokers, &args.topic, events.into_iter(), |n| {
        counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })
    .await;
    progress.finish();
    let sent = result?;
    eprintln!(
        "Sent {sent} events to {} on {brokers} ({poison} deliberately invalid) in {:.1}s.",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
