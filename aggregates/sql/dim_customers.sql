-- The customers dimension, copied whole into ClickHouse `customers` by every refresh.
SELECT customer_id, name, email, city, country, is_active, created_at, updated_at
FROM shop.stage.customers
