-- Purchases streamed from Kafka by `shop-analytics stream clickhouse`.
--
-- Every row carries the Kafka partition and offset it came from: the loader resumes each
-- partition after the highest offset stored here, so a crash never loads a message twice.
-- No PARTITION BY on purpose: an INSERT is then one part, committed all or nothing (a table
-- partitioned by month would commit the months of one insert separately).
-- ReplacingMergeTree on purchase_id also folds a purchase sent twice by its producer;
-- query with FINAL (or GROUP BY purchase_id) for exact counts before background merges ran.
CREATE TABLE IF NOT EXISTS {database}.purchases
(
    purchase_id     String,
    customer_id     Int64,
    product_id      Int64,
    seller_id       Int64,
    quantity        Int32,
    unit_price      Decimal(12, 2),
    currency        String,
    purchased_at    DateTime('UTC'),
    extras          Nullable(String),
    dt              Date,
    kafka_topic     String,
    kafka_partition Int32,
    kafka_offset    Int64,
    loaded_at       DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY purchase_id
