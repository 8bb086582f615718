//! `shop-analytics maintain`.

use std::path::Path;

use anyhow::bail;
use shop_lake::maintain;
use shop_types::report::Report;

use crate::config::MaintainArgs;

pub async fn run(args: MaintainArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let lake = super::serve::open_lake(&args.lake, file).await?;
    let options = args.options.options(args.no_concurrent_writers)?;
    let outcomes = maintain::maintain_all(&lake, &options).await?;
    if outcomes.is_empty() {
        println!("No Delta tables in {}.", lake.location());
        return Ok(());
    }
    let mut failed = Vec::new();
    for (dir, outcome) in outcomes {
        match outcome {
            Ok(r) => println!(
                "{}: {} → {} files ({} compacted into {}), {} deleted by vacuum, version {}",
                r.table,
                r.files_before,
                r.files_after,
                r.compacted,
                r.written,
                r.vacuumed,
                r.version
            ),
            Err(e) => {
                eprintln!("{dir}: {}", Report(&e));
                failed.push(dir.to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("maintenance failed for {}", failed.join(", "));
    }
    Ok(())
}

/// Maintains every Delta table of `lake` at each time of `cron`, until aborted; each table's
/// outcome is logged.
pub fn spawn_scheduled(
    lake: shop_lake::Lake,
    cron: croner::Cron,
    options: maintain::MaintainOptions,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = chrono::Utc::now();
            let next = match cron.find_next_occurrence(&now, false) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(cause = %e, "the maintenance schedule has no next time");
                    return;
                }
            };
            tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
            let outcomes = match maintain::maintain_all(&lake, &options).await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    tracing::warn!(cause = %Report(&e), "cannot list the lake's Delta tables to maintain them");
                    continue;
                }
            };
            for (dir, outcome) in outcomes {
                match outcome {
                    Ok(r) => tracing::info!(
                        table = %r.table,
                        files_before = r.files_before,
                        files_after = r.files_after,
                        compacted = r.compacted,
                        vacuumed = r.vacuumed,
                        version = r.version,
                        "maintained"
                    ),
                    Err(e) => {
                        tracing::warn!(table = %dir, cause = %Report(&e), "maintenance failed; tried again at the next time")
                    }
                }
            }
        }
    })
}
