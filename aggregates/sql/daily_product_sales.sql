-- analytics.daily_product_sales: one row per day, product and currency with purchases.
SELECT
    dt,
    product_id,
    currency,
    COUNT(DISTINCT purchase_id)                        AS orders,
    CAST(SUM(quantity) AS BIGINT)                      AS units,
    CAST(SUM(quantity * unit_price) AS DECIMAL(18, 2)) AS revenue,
    COUNT(DISTINCT customer_id)                        AS buyers
FROM shop.stage.purchases
GROUP BY dt, product_id, currency
