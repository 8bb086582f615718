-- analytics.daily_seller_sales: one row per day, seller and currency with purchases.
SELECT
    dt,
    seller_id,
    currency,
    COUNT(DISTINCT purchase_id)                        AS orders,
    CAST(SUM(quantity) AS BIGINT)                      AS units,
    CAST(SUM(quantity * unit_price) AS DECIMAL(18, 2)) AS revenue,
    COUNT(DISTINCT customer_id)                        AS buyers,
    COUNT(DISTINCT product_id)                         AS products
FROM shop.stage.purchases
GROUP BY dt, seller_id, currency
