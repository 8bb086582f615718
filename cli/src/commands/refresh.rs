//! `shop-analytics refresh` and `shop-analytics stream clickhouse`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use shop_aggregates::clickhouse::ClickHouse;
use shop_aggregates::runs::Trigger;
use shop_aggregates::stream::{Loader, StreamConfig, StreamMetrics};
use shop_aggregates::{Refresher, Selection};
use shop_lake::Lake;

use super::serve;
use crate::config::{ClickHouseArgs, RefreshArgs, StreamClickhouseArgs};
use crate::progress::progress_bar;

/// The ClickHouse connection when one is configured. It is not pinged here: `serve` must start
/// while ClickHouse is down (its scheduler retries), and `refresh` names the address on failure.
pub async fn clickhouse(
    args: &ClickHouseArgs,
    file: Option<&Path>,
) -> anyhow::Result<Option<ClickHouse>> {
    let Some(config) = args.resolve(file)? else {
        return Ok(None);
    };
    Ok(Some(ClickHouse::new(config)?))
}

/// `refresh`: the selected tables for each day, then the dimensions; stops at the first failed
/// day (every run, failed or not, is in system.refresh_runs).
pub async fn run(args: RefreshArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let selection = if args.only.is_empty() {
        Selection::all()
    } else {
        Selection::only(&args.only)?
    };
    let lake = serve::open_lake(&args.lake, file).await?;
    let clickhouse = clickhouse(&args.clickhouse, file).await?;
    if clickhouse.is_none() {
        eprintln!("ClickHouse is not configured (--clickhouse-url): refreshing the lake only.");
    }
    let refresher = Refresher::new(lake, clickhouse);
    let ctx = refresher.context().await?;
    let days: Vec<NaiveDate> = if args.all_days {
        shop_aggregates::purchase_days(&ctx).await?
    } else if let (Some(from), Some(to)) = (args.from, args.to) {
        anyhow::ensure!(from <= to, "--from {from} is after --to {to}");
        from.iter_days().take_while(|d| *d <= to).collect()
    } else {
        vec![args.date.unwrap_or_else(|| {
            chrono::Utc::now()
                .date_naive()
                .pred_opt()
                .expect("a day before")
        })]
    };
    refresh_days(&refresher, &ctx, &days, &selection, Trigger::Manual).await
}

/// Refreshes `days`, then the dimensions, with a progress bar; the first failure stops it.
pub async fn refresh_days(
    refresher: &Refresher,
    ctx: &shop_aggregates::SessionContext,
    days: &[NaiveDate],
    selection: &Selection,
    trigger: Trigger,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let bar = (!selection.aggregates.is_empty() && !days.is_empty())
        .then(|| progress_bar(days.len() as u64, "days"));
    let (mut lake_rows, mut clickhouse_rows) = (0, 0);
    if !selection.aggregates.is_empty() {
        for day in days {
            let (record, result) = refresher.run_day(ctx, *day, selection, trigger, 1).await;
            if let Some(bar) = &bar {
                bar.inc(1);
            }
            result.with_context(|| format!("refreshing {day} (run {})", record.run_id))?;
            lake_rows += record.lake_rows.unwrap_or(0);
            clickhouse_rows += record.clickhouse_rows.unwrap_or(0);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !selection.aggregates.is_empty() {
        let range = match (days.first(), days.last()) {
            (Some(first), Some(last)) if first != last => format!("{first} to {last}"),
            (Some(day), _) => day.to_string(),
            _ => "no days".into(),
        };
        eprintln!(
            "Refreshed {} for {range}: {lake_rows} rows in the lake{} in {:.1}s.",
            selection.aggregate_names().join(", "),
            match refresher.clickhouse() {
                Some(_) => format!(", {clickhouse_rows} in ClickHouse"),
                None => String::new(),
            },
            started.elapsed().as_secs_f64()
        );
    }
    if refresher.clickhouse().is_some() && !selection.dimensions.is_empty() {
        let (record, result) = refresher.run_dimensions(ctx, selection, trigger, 1).await;
        let reports =
            result.with_context(|| format!("refreshing the dimensions (run {})", record.run_id))?;
        for report in reports {
            eprintln!(
                "Copied {} to ClickHouse: {} rows.",
                report.table,
                report.clickhouse_rows.unwrap_or(0)
            );
        }
    }
    Ok(())
}

/// Recomputes every day with purchases into the lake (quickstart), recorded as manual runs.
pub async fn build_aggregates(lake: &Lake) -> anyhow::Result<()> {
    let refresher = Refresher::new(lake.clone(), None);
    let ctx = refresher.context().await?;
    let days = shop_aggregates::purchase_days(&ctx).await?;
    refresh_days(&refresher, &ctx, &days, &Selection::all(), Trigger::Manual).await
}

/// `stream clickhouse`: the loader on a blocking thread until SIGTERM / Ctrl-C.
pub async fn stream_clickhouse(
    args: StreamClickhouseArgs,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let brokers = args.kafka.resolve(file)?;
    let ch = clickhouse(&args.clickhouse, file).await?.context(
        "no ClickHouse URL: pass --clickhouse-url, set SHOP_CLICKHOUSE_URL or put clickhouse_url \
         into [clickhouse] of the configuration file",
    )?;
    Loader::prepare(&ch)
        .await
        .context("cannot create the ClickHouse tables")?;
    let mut config = StreamConfig::new(&brokers, &args.topic, &args.group);
    config.flush_rows = args.flush_rows.max(1);
    config.flush_interval = Duration::from_millis(args.flush_interval_ms.max(10));
    config.consumer.session_timeout_ms = args.session_timeout_ms;
    config.consumer.metrics_interval = Duration::from_secs(args.metrics_interval_secs.max(1));
    config.consumer.health_file = args.health_file;
    let metrics = Arc::new(StreamMetrics::default());
    let loader = Loader::new(
        ch,
        config,
        tokio::runtime::Handle::current(),
        Arc::clone(&metrics),
    );
    super::run_until_signal("ClickHouse loader", move |stop| loader.run(stop)).await?;
    eprintln!(
        "Stopped: {} purchases and {} rejected events loaded into ClickHouse.",
        metrics.rows.load(Ordering::Relaxed),
        metrics.rejected.load(Ordering::Relaxed)
    );
    Ok(())
}
