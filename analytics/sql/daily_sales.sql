-- analytics.daily_sales: one row per day with purchases.
-- Computed per day by `shop-analytics quickstart` / `refresh`, which add `WHERE dt = <day>`.
SELECT
    dt,
    COUNT(DISTINCT purchase_id)                        AS orders,
    CAST(SUM(quantity) AS BIGINT)                      AS units,
    CAST(SUM(quantity * unit_price) AS DECIMAL(18, 2)) AS revenue,
    COUNT(DISTINCT customer_id)                        AS buyers
FROM shop.stage.purchases
GROUP BY dt
