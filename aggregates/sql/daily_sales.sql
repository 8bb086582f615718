-- analytics.daily_sales: one row per day and currency with purchases.
-- `shop-analytics refresh` (and quickstart) compute it one day at a time by adding
-- `WHERE dt = <day>`; amounts are never summed across currencies.
SELECT
    dt,
    currency,
    COUNT(DISTINCT purchase_id)                        AS orders,
    CAST(SUM(quantity) AS BIGINT)                      AS units,
    CAST(SUM(quantity * unit_price) AS DECIMAL(18, 2)) AS revenue,
    COUNT(DISTINCT customer_id)                        AS buyers
FROM shop.stage.purchases
GROUP BY dt, currency
