-- ClickHouse table of analytics.daily_sales. A refresh replaces one day's partition at a time.
CREATE TABLE IF NOT EXISTS {database}.daily_sales
(
    dt       Date,
    currency String,
    orders   Int64,
    units    Int64,
    revenue  Decimal(18, 2),
    buyers   Int64
)
ENGINE = MergeTree
PARTITION BY dt
ORDER BY (dt, currency)
