-- The customers dimension. A refresh loads a copy and swaps it in with one RENAME.
CREATE TABLE IF NOT EXISTS {database}.customers
(
    customer_id Int64,
    name        String,
    email       Nullable(String),
    city        Nullable(String),
    country     String,
    is_active   UInt8,
    created_at  DateTime('UTC'),
    updated_at  DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY customer_id
