-- analytics.daily_category_sales: one row per day, product category and currency.
-- Purchases of a product missing from stage.products count under the category 'unknown', so
-- the categories of a day always add up to analytics.daily_sales.
SELECT
    p.dt,
    COALESCE(c.category, 'unknown')                        AS category,
    p.currency,
    COUNT(DISTINCT p.purchase_id)                          AS orders,
    CAST(SUM(p.quantity) AS BIGINT)                        AS units,
    CAST(SUM(p.quantity * p.unit_price) AS DECIMAL(18, 2)) AS revenue,
    COUNT(DISTINCT p.customer_id)                          AS buyers
FROM shop.stage.purchases AS p
LEFT JOIN (
    -- one category per product even if the catalogue repeats a product_id
    SELECT product_id, MIN(category) AS category FROM shop.stage.products GROUP BY product_id
) AS c ON c.product_id = p.product_id
GROUP BY p.dt, COALESCE(c.category, 'unknown'), p.currency
