//! `refresh`, the refresh schedule of `serve` (`[refresh]`) and `stream clickhouse`.

use super::*;

#[derive(Debug, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// The day to refresh (YYYY-MM-DD) [default: yesterday, UTC]
    #[arg(long, conflicts_with_all = ["from", "to", "all_days"])]
    pub date: Option<chrono::NaiveDate>,
    /// First day of a range (with --to).
    #[arg(long, requires = "to")]
    pub from: Option<chrono::NaiveDate>,
    /// Last day of a range, included (with --from).
    #[arg(long, requires = "from")]
    pub to: Option<chrono::NaiveDate>,
    /// Every day that has purchases in the stage.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub all_days: bool,
    /// Only these tables (aggregates such as daily_sales, dimensions such as customers),
    /// comma-separated [default: all]
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// The refresh scheduler of `serve`. Also `SHOP_REFRESH_*` variables and keys of `[refresh]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshScheduleArgs {
    /// When to refresh the day before, as a five-field cron expression in UTC, or "off"
    /// [default: "0 1 * * *"]
    #[arg(long, env = "SHOP_REFRESH_SCHEDULE", value_name = "CRON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_schedule: Option<String>,
    /// At start, refresh each of this many days before today that has no successful run
    /// [default: 7]
    #[arg(long, env = "SHOP_REFRESH_CATCH_UP_DAYS", value_name = "DAYS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_catch_up_days: Option<u32>,
    /// First wait before retrying a failed run; doubles per try [default: 60]
    #[arg(long, env = "SHOP_REFRESH_RETRY_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_retry_secs: Option<u64>,
    /// Longest wait between tries [default: 3600]
    #[arg(long, env = "SHOP_REFRESH_RETRY_MAX_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_retry_max_secs: Option<u64>,
    /// Tries of one run in all [default: 8]
    #[arg(long, env = "SHOP_REFRESH_MAX_ATTEMPTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_max_attempts: Option<u32>,
}

impl RefreshScheduleArgs {
    /// The schedule after layering; `None` when switched off.
    pub fn resolve(
        &self,
        file: Option<&Path>,
    ) -> anyhow::Result<Option<shop_aggregates::schedule::ScheduleConfig>> {
        let merged: RefreshScheduleArgs = layered(file, "refresh", self)?;
        let cron = merged
            .refresh_schedule
            .unwrap_or_else(|| shop_aggregates::schedule::DEFAULT_CRON.to_string());
        if cron.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let mut config = shop_aggregates::schedule::ScheduleConfig::new(&cron)?;
        if let Some(days) = merged.refresh_catch_up_days {
            config.catch_up_days = days;
        }
        if let Some(secs) = merged.refresh_retry_secs {
            config.retry_initial = Duration::from_secs(secs.max(1));
        }
        if let Some(secs) = merged.refresh_retry_max_secs {
            config.retry_max = Duration::from_secs(secs.max(1));
        }
        if let Some(n) = merged.refresh_max_attempts {
            config.max_attempts = n.max(1);
        }
        Ok(Some(config))
    }
}

#[derive(Debug, Args)]
pub struct StreamClickhouseArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// Topic of the purchase events.
    #[arg(long, env = "SHOP_KAFKA_TOPIC", default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Consumer group, apart from the lake worker's.
    #[arg(
        long,
        env = "SHOP_STREAM_GROUP",
        default_value = "shop-stream-clickhouse"
    )]
    pub group: String,
    /// Insert once this many events are buffered.
    #[arg(long, default_value_t = 50_000)]
    pub flush_rows: usize,
    /// … or when the oldest buffered event waited this long.
    #[arg(long, env = "SHOP_STREAM_FLUSH_INTERVAL_MS", default_value_t = 1_000)]
    pub flush_interval_ms: u64,
    /// Consumer group session timeout.
    #[arg(long, env = "SHOP_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u32,
    /// How often to log the metrics.
    #[arg(long, default_value_t = 10)]
    pub metrics_interval_secs: u64,
    /// Touch this file at every metrics tick (container healthchecks).
    #[arg(long, env = "SHOP_STREAM_HEALTH_FILE", value_name = "FILE")]
    pub health_file: Option<PathBuf>,
}
