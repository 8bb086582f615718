//! `shop-analytics`: the shop's lakehouse in one binary. See `shop-analytics --help`.

mod commands;
mod config;
mod progress;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = config::Cli::parse();
    config::init_logging(&cli.global);
    // Queries run on threads of their own (shop_server::executor); the network's threads get a
    // larger stack than the default 2 MiB too, for deep but legitimate requests. At least four
    // of them: delta-rs' kernel blocks its thread while it waits for some reads (a checkpoint's
    // footer), and the reads need another thread free to drive the store's connections.
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get().max(4));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
