//! `shop-analytics serve`: Flight SQL over an existing lake.

use std::path::Path;

use anyhow::Context;
use shop_aggregates::Refresher;
use shop_aggregates::schedule::Scheduler;
use shop_lake::Lake;
use shop_server::RunningServer;

use crate::config::{LakeArgs, ResolvedServer, ServeArgs};

/// The default lake of every command: a folder next to where it runs.
pub const DEFAULT_LAKE: &str = "./lake-data";

pub async fn run(args: ServeArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let lake = open_lake(&args.lake, file).await?;
    let server = args.server.resolve(file)?;
    let schedule = args.schedule.resolve(file)?;
    let clickhouse = super::refresh::clickhouse(&args.clickhouse, file).await?;
    let running = start(&lake, server).await?;
    eprintln!(
        "Serving the lake at {} on grpc://{}",
        lake.location(),
        running.addr()
    );
    let scheduler = schedule.map(|config| {
        eprintln!(
            "Refreshing the aggregates on the schedule \"{}\" (UTC){}.",
            config.cron.pattern,
            if clickhouse.is_some() {
                " into the lake and ClickHouse"
            } else {
                " into the lake only (no --clickhouse-url)"
            }
        );
        let scheduler = Scheduler::new(Refresher::new(lake.clone(), clickhouse), config);
        tokio::spawn(scheduler.run())
    });
    let result = wait_for_shutdown(running).await;
    // However the server ended: a refresh in progress is abandoned (its day stays as it was and
    // its run is marked interrupted by the next start).
    if let Some(scheduler) = scheduler {
        scheduler.abort();
        let _ = scheduler.await;
    }
    result
}

/// Opens the lake and checks that it answers, for a clear error before anything else.
pub async fn open_lake(args: &LakeArgs, file: Option<&Path>) -> anyhow::Result<Lake> {
    let config = args.resolve(file, DEFAULT_LAKE)?;
    let lake =
        Lake::open(&config).with_context(|| format!("cannot open the lake {}", config.root))?;
    lake.check_reachable()
        .await
        .with_context(|| format!("the lake {} is not reachable", lake.location()))?;
    Ok(lake)
}

/// Starts the server and writes the ready file.
pub async fn start(lake: &Lake, server: ResolvedServer) -> anyhow::Result<RunningServer> {
    let running = shop_server::start(lake.clone(), server.config)
        .await
        .context("cannot start the Flight SQL server")?;
    if let Some(path) = &server.ready_file {
        write_ready_file(path, &running.addr().to_string())?;
    }
    Ok(running)
}

/// Writes `content` to `path` atomically (temp file + rename), so a reader never sees half of it.
fn write_ready_file(path: &Path, content: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the ready file {}", path.display()))
}

/// Serves until SIGINT or SIGTERM, then stops gracefully.
pub async fn wait_for_shutdown(running: RunningServer) -> anyhow::Result<()> {
    running
        .wait(shutdown_signal())
        .await
        .context("the server stopped with an error")
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
