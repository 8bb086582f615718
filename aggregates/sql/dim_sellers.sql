-- The sellers dimension, copied whole into ClickHouse `sellers` by every refresh.
SELECT seller_id, name, country, rating, created_at, updated_at
FROM shop.stage.sellers
