//! `maintain` and the maintenance schedule of `serve`: compaction, checkpoints and vacuum of the
//! lake's Delta tables.

use super::*;

#[derive(Debug, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub options: MaintainOptionsArgs,
    /// Allow a retention under one hour: only when no writer (ingest, refresh, serve) uses the
    /// lake, since vacuum would delete the files a running writer has uploaded but not yet
    /// committed.
    #[arg(long)]
    pub no_concurrent_writers: bool,
}

/// How tables are maintained, by `maintain` and by the schedule of `serve`.
#[derive(Debug, Clone, Args)]
pub struct MaintainOptionsArgs {
    /// The file size compaction aims at, in MiB.
    #[arg(
        long,
        env = "SHOP_MAINTAIN_TARGET_FILE_MB",
        default_value_t = 128,
        value_parser = clap::value_parser!(u64).range(1..=1_048_576)
    )]
    pub target_file_mb: u64,
    /// How long files the tables no longer read are kept before vacuum deletes them, in hours.
    /// A query that started on an older version within this time still finds its files.
    #[arg(long, env = "SHOP_MAINTAIN_RETENTION_HOURS", default_value_t = 168)]
    pub retention_hours: u32,
}

impl MaintainOptionsArgs {
    /// The options; a retention under one hour only when `no_concurrent_writers`.
    pub fn options(
        &self,
        no_concurrent_writers: bool,
    ) -> anyhow::Result<shop_lake::maintain::MaintainOptions> {
        if self.retention_hours < 1 && !no_concurrent_writers {
            bail!(
                "a retention under one hour lets vacuum delete files that a running writer has \
                 uploaded but not committed yet; use at least 1 hour, or `maintain \
                 --no-concurrent-writers` when nothing else writes to the lake"
            );
        }
        Ok(shop_lake::maintain::MaintainOptions {
            target_file_size: std::num::NonZeroU64::new(self.target_file_mb * 1024 * 1024)
                .expect("the range starts at 1"),
            retention: chrono::Duration::hours(i64::from(self.retention_hours)),
        })
    }
}

/// The maintenance schedule of `serve`.
#[derive(Debug, Clone, Args)]
pub struct MaintainScheduleArgs {
    /// When `serve` maintains every Delta table (as `shop-analytics maintain` does), as a
    /// five-field cron expression in UTC, or "off".
    #[arg(
        long,
        env = "SHOP_MAINTAIN_SCHEDULE",
        default_value = "30 3 * * *",
        value_name = "CRON"
    )]
    pub maintain_schedule: String,
    #[command(flatten)]
    pub options: MaintainOptionsArgs,
}

impl MaintainScheduleArgs {
    /// The schedule; `None` when switched off.
    pub fn cron(&self) -> anyhow::Result<Option<croner::Cron>> {
        let expression = self.maintain_schedule.trim();
        if expression.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        expression.parse().map(Some).with_context(|| {
            format!(
                "invalid maintenance schedule {expression:?} (expected five cron fields, e.g. \"30 3 * * *\", or \"off\")"
            )
        })
    }
}
