//! `shop-analytics serve`: Flight SQL over an existing lake.

use std::path::Path;

use anyhow::Context;
use shop_aggregates::Refresher;
use shop_aggregates::schedule::Scheduler;
use shop_lake::Lake;
use shop_server::RunningServer;

use crate::config::{LakeArgs, ResolvedServer, ServeArgs, ShopApiArgs};

/// The default lake of every command: a folder next to where it runs.
pub const DEFAULT_LAKE: &str = "./lake-data";

pub async fn run(args: ServeArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let lake = open_lake(&args.lake, file).await?;
    let server = args.server.resolve(file)?;
    let backends = api_backends(&args.api, file).await?;
    let schedule = args.schedule.resolve(file)?;
    let maintain_cron = args.maintain.cron()?;
    let maintain_options = args.maintain.options.options(false)?;
    let clickhouse = super::refresh::clickhouse(&args.clickhouse, file).await?;
    let running = start(&lake, server, backends).await?;
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
    let maintenance = maintain_cron.map(|cron| {
        eprintln!(
            "Maintaining the Delta tables on the schedule \"{}\" (UTC).",
            cron.pattern
        );
        super::maintain::spawn_scheduled(lake.clone(), cron, maintain_options)
    });
    let result = wait_for_shutdown(running).await;
    if let Some(maintenance) = maintenance {
        maintenance.abort();
        let _ = maintenance.await;
    }
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

/// PostgreSQL (migrated) and the Kafka producer of the shop API, as far as configured.
///
/// An unreachable PostgreSQL stops the start with a clear error; Kafka is only contacted by
/// the first purchase, so a broker that is down makes CreatePurchase answer UNAVAILABLE and
/// nothing else.
async fn api_backends(
    args: &ShopApiArgs,
    file: Option<&Path>,
) -> anyhow::Result<shop_api::Backends> {
    let mut backends = shop_api::Backends::default();
    if let Some(pg) = args.postgres.resolve_optional(file)? {
        let pool = shop_ingest::postgres::connect_pool(&pg.url, pg.connect_timeout, 8).await?;
        shop_ingest::postgres::migrate(&pool).await?;
        eprintln!(
            "Sellers and customers of the shop API in PostgreSQL at {}.",
            shop_ingest::postgres::redact(&pg.url)
        );
        backends.postgres = Some(pool);
    }
    let kafka = crate::config::KafkaArgs {
        kafka_brokers: args.kafka_brokers.clone(),
    };
    if let Some(brokers) = kafka.resolve_optional(file)? {
        let config = shop_api::PurchaseConfig {
            topic: args.topic.clone(),
            publish_timeout: std::time::Duration::from_millis(args.publish_timeout_ms.max(1)),
        };
        let publisher = shop_api::KafkaPublisher::new(&brokers, &config)
            .with_context(|| format!("cannot create a Kafka producer for {brokers}"))?;
        // The topic is made here if it is missing; a broker that is down is only a warning.
        let topic = args.topic.clone();
        let ensure = shop_kafka::admin::ensure_topic(&brokers, &topic, 4);
        match tokio::time::timeout(config.publish_timeout, ensure).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(%brokers, %topic, cause = %shop_types::report::Report(&e), "cannot check the purchases topic")
            }
            Err(_) => {
                tracing::warn!(%brokers, %topic, "Kafka did not answer; purchases are refused until it does")
            }
        }
        eprintln!("New purchases of the shop API are published to {topic} on {brokers}.");
        backends.kafka = Some(publisher);
    }
    Ok(backends)
}

/// Starts the Flight SQL server with the shop API beside it (gRPC on its port, REST/JSON on the
/// HTTP port, one set of credentials), and writes the ready files.
pub async fn start(
    lake: &Lake,
    server: ResolvedServer,
    backends: shop_api::Backends,
) -> anyhow::Result<RunningServer> {
    let running = shop_api::start(lake.clone(), server.config, backends)
        .await
        .context("cannot start the Flight SQL server")?;
    if let (Some(path), Some(http)) = (&server.http_ready_file, running.http_addr()) {
        write_ready_file(path, &http.to_string())?;
    }
    if let Some(path) = &server.ready_file {
        write_ready_file(path, &running.addr().to_string())?;
    }
    if let Some(http) = running.http_addr() {
        let scheme = if running.uri().starts_with("grpc+tls") {
            "https"
        } else {
            "http"
        };
        eprintln!("REST/JSON shop API on {scheme}://{http}/v1/… (description: /openapi.json)");
    }
    Ok(running)
}

/// Writes `content` to `path` atomically (temp file + rename), so a reader never sees half of it.
fn write_ready_file(path: &Path, content: &str) -> anyhow::Result<()> {
    // `<file>.tmp` next to it: two ready files never share a temp file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
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
