//! `shop-analytics ingest …` and `generate postgres`: source systems into the lake.

use std::path::Path;

use anyhow::Context;
use shop_ingest::postgres::{self, ExportOptions, Mode, PgPool, generate::GenerateSpec};

use super::serve;
use crate::config::{ExportMode, GeneratePostgresArgs, IngestPostgresArgs, ResolvedPostgres};
use crate::progress::RowProgress;

async fn connect(pg: &ResolvedPostgres) -> anyhow::Result<PgPool> {
    Ok(postgres::connect(&pg.url, pg.connect_timeout).await?)
}

/// `ingest postgres`: every table exported in turn; the first failure stops the run with nothing
/// of that table published.
pub async fn postgres(args: IngestPostgresArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let pg = args.postgres.resolve(file)?;
    let lake = serve::open_lake(&args.lake, file).await?;
    let pool = connect(&pg).await?;
    let options = ExportOptions {
        mode: match args.mode {
            ExportMode::Snapshot => Mode::Snapshot,
            ExportMode::Incremental => Mode::Incremental,
        },
        batch_rows: args.batch_rows.max(1),
        updated_column: args.updated_column,
        lookback: std::time::Duration::from_secs(args.lookback_secs),
        rows_per_file: args.rows_per_file.max(1),
    };
    for table in &args.tables {
        let progress = RowProgress::start(table.clone(), None);
        let result =
            postgres::export_table(&pool, &lake, table, &options, progress.counter()).await;
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
            report.manifest_version,
            report.elapsed.as_secs_f64(),
            report.rows_read as f64 / report.elapsed.as_secs_f64().max(1e-3),
        );
    }
    pool.close().await;
    Ok(())
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
