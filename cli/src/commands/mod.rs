//! The subcommands.

mod ingest;
mod quickstart;
mod refresh;
mod serve;

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
        Command::Stream(StreamCommand::Clickhouse(args)) => {
            refresh::stream_clickhouse(args, file).await
        }
    }
}
