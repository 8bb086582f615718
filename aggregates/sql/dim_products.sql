-- The products dimension, copied whole into ClickHouse `products` by every refresh.
SELECT product_id, seller_id, name, category, price, created_at
FROM shop.stage.products
