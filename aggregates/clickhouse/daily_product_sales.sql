-- ClickHouse table of analytics.daily_product_sales.
CREATE TABLE IF NOT EXISTS {database}.daily_product_sales
(
    dt         Date,
    product_id Int64,
    currency   String,
    orders     Int64,
    units      Int64,
    revenue    Decimal(18, 2),
    buyers     Int64
)
ENGINE = MergeTree
PARTITION BY dt
ORDER BY (dt, product_id, currency)
