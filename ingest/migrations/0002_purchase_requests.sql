-- Idempotency keys of CreatePurchase (shop.v1.PurchaseService, POST /v1/purchases).
--
-- A request that carries an idempotency key is recorded here before its event is published to
-- Kafka, and marked published once Kafka acknowledged it. A retry with the same key and the same
-- fields returns the recorded purchase (publishing it only if the first attempt did not get
-- through); the same key with other fields is refused. Keys are a customer's own: two customers
-- may use the same key. The event is kept as the exact JSON that was (or is to be) published, so
-- a retry publishes the same bytes: same purchase_id, same time.

CREATE TABLE IF NOT EXISTS purchase_requests (
    customer_id     bigint      NOT NULL,
    idempotency_key text        NOT NULL,
    request         text        NOT NULL,   -- the client's fields as canonical JSON text
    purchase_id     uuid        NOT NULL UNIQUE,
    event           text        NOT NULL,   -- the purchase event (docs/KAFKA.md), as published
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,            -- NULL: Kafka has not acknowledged it yet
    PRIMARY KEY (customer_id, idempotency_key)
);
