//! Kafka (`[kafka]`), `ingest kafka` and `generate kafka`.

use super::*;

/// Where Kafka is. Also `SHOP_KAFKA_BROKERS` and a key of `[kafka]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaArgs {
    /// Bootstrap brokers, e.g. localhost:9092 [default: 127.0.0.1:9092]
    #[arg(long, env = "SHOP_KAFKA_BROKERS", value_name = "HOST:PORT,…")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
}

impl KafkaArgs {
    pub fn resolve(&self, file: Option<&Path>) -> anyhow::Result<String> {
        Ok(self
            .resolve_optional(file)?
            .unwrap_or_else(|| "127.0.0.1:9092".to_string()))
    }

    /// The brokers if any are configured, `None` otherwise.
    pub fn resolve_optional(&self, file: Option<&Path>) -> anyhow::Result<Option<String>> {
        let merged: KafkaArgs = layered(file, "kafka", self)?;
        Ok(merged.kafka_brokers.filter(|b| !b.trim().is_empty()))
    }
}

#[derive(Debug, Args)]
pub struct IngestKafkaArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Topic of the purchase events.
    #[arg(long, env = "SHOP_KAFKA_TOPIC", default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Consumer group; workers of one group share the partitions.
    #[arg(
        long,
        env = "SHOP_KAFKA_GROUP",
        default_value = "shop-ingest-purchases"
    )]
    pub group: String,
    /// Flush a partition once it holds this many events.
    #[arg(long, env = "SHOP_KAFKA_FLUSH_ROWS", default_value_t = 50_000)]
    pub flush_rows: usize,
    /// … or this many payload bytes, e.g. 32MiB.
    #[arg(long, env = "SHOP_KAFKA_FLUSH_BYTES", default_value = "32MiB")]
    pub flush_bytes: String,
    /// … or when its oldest event waited this long (what keeps data fresh).
    #[arg(long, env = "SHOP_KAFKA_FLUSH_INTERVAL_MS", default_value_t = 2_000)]
    pub flush_interval_ms: u64,
    /// Consumer group session timeout.
    #[arg(long, env = "SHOP_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u32,
    /// How often to log the metrics (rows, rows/s, files, rejects, lag).
    #[arg(long, default_value_t = 10)]
    pub metrics_interval_secs: u64,
    /// Touch this file at every metrics tick while consuming (container healthchecks).
    #[arg(long, env = "SHOP_KAFKA_HEALTH_FILE", value_name = "FILE")]
    pub health_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateKafkaArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic to write to (created with --partitions if missing).
    #[arg(long, default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Events to send.
    #[arg(long)]
    pub count: u64,
    /// Fraction of events that are deliberately invalid (0.0 – 1.0): malformed JSON, wrong
    /// types, bad values, unknown fields, empty messages and repeated purchase ids.
    #[arg(long, default_value_t = 0.0)]
    pub poison_rate: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}
