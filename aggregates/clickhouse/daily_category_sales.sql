-- ClickHouse table of analytics.daily_category_sales.
CREATE TABLE IF NOT EXISTS {database}.daily_category_sales
(
    dt       Date,
    category String,
    currency String,
    orders   Int64,
    units    Int64,
    revenue  Decimal(18, 2),
    buyers   Int64
)
ENGINE = MergeTree
PARTITION BY dt
ORDER BY (dt, category, currency)
