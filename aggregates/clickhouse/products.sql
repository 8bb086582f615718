-- The products dimension. A refresh loads a copy and swaps it in with one RENAME.
CREATE TABLE IF NOT EXISTS {database}.products
(
    product_id Int64,
    seller_id  Int64,
    name       String,
    category   String,
    price      Decimal(12, 2),
    created_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY product_id
