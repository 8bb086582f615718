//! `maintain`: compaction, checkpoints and vacuum of the lake's Delta tables.

use super::*;

#[derive(Debug, Args)]
pub struct MaintainArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
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

impl MaintainArgs {
    pub fn options(&self) -> shop_lake::maintain::MaintainOptions {
        shop_lake::maintain::MaintainOptions {
            target_file_size: std::num::NonZeroU64::new(self.target_file_mb * 1024 * 1024)
                .expect("the range starts at 1"),
            retention: chrono::Duration::hours(i64::from(self.retention_hours)),
        }
    }
}
