-- Events `shop-analytics stream clickhouse` could not load, with the reason. Keyed by their
-- Kafka position, so a replay after a crash folds into the same rows.
CREATE TABLE IF NOT EXISTS {database}.purchases_rejected
(
    kafka_topic     String,
    kafka_partition Int32,
    kafka_offset    Int64,
    kafka_key       Nullable(String),
    payload         Nullable(String),
    reason          String,
    kafka_timestamp Nullable(DateTime('UTC')),
    rejected_at     DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (kafka_topic, kafka_partition, kafka_offset)
