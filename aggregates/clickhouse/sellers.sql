-- The sellers dimension. A refresh loads a copy and swaps it in with one RENAME.
CREATE TABLE IF NOT EXISTS {database}.sellers
(
    seller_id  Int64,
    name       String,
    country    String,
    rating     Nullable(Decimal(3, 2)),
    created_at DateTime('UTC'),
    updated_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY seller_id
