-- ClickHouse table of analytics.daily_seller_sales.
CREATE TABLE IF NOT EXISTS {database}.daily_seller_sales
(
    dt        Date,
    seller_id Int64,
    currency  String,
    orders    Int64,
    units     Int64,
    revenue   Decimal(18, 2),
    buyers    Int64,
    products  Int64
)
ENGINE = MergeTree
PARTITION BY dt
ORDER BY (dt, seller_id, currency)
