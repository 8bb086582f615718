//! The subcommands.

mod ingest;
mod maintain;
mod quickstart;
mod refresh;
mod serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use crate::config::{Cli, Command, GenerateCommand, IngestCommand, StreamCommand};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli.global.config.as_deref();
    match cli.command {
        Command::Quickstart(args) => quickstart::run(args, file).await,
        Command::Serve(args) => serve::run(args, file).await,
        Command::Generate(GenerateCommand::Demo { lake, scale }) => {
            let lake = serve::open_lake(&lake, file).await?;
            quickstart::generate_demo(&lake, scale).await
        }
        Command::Generate(GenerateCommand::Postgres(args)) => {
            ingest::generate_postgres(args, file).await
        }
        Command::Generate(GenerateCommand::Kafka(args)) => ingest::generate_kafka(args, file).await,
        Command::Ingest(IngestCommand::Postgres(args)) => ingest::postgres(args, file).await,
        Command::Ingest(IngestCommand::Kafka(args)) => ingest::kafka(args, file).await,
        Command::Ingest(IngestCommand::Products(args)) => ingest::products(args, file).await,
        Command::Refresh(args) => refresh::run(args, file).await,
        Command::Maintain(args) => maintain::run(args, file).await,
        Command::Stream(StreamCommand::Clickhouse(args)) => {
            refresh::stream_clickhouse(args, file).await
        }
    }
}

/// Runs a blocking worker (a Kafka consumer loop) on a thread of its own until it returns, or
/// until SIGTERM / Ctrl-C sets its `stop` flag and it finishes its final flush.
pub async fn run_until_signal<E>(
    what: &'static str,
    work: impl FnOnce(&AtomicBool) -> Result<(), E> + Send + 'static,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::task::spawn_blocking({
        let stop = Arc::clone(&stop);
        move || work(&stop)
    });
    tokio::pin!(running);
    let result = tokio::select! {
        result = &mut running => result,
        () = serve::shutdown_signal() => {
            stop.store(true, Ordering::Relaxed);
            running.await
        }
    };
    result.with_context(|| format!("the {what} panicked"))??;
    Ok(())
}
