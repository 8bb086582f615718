//! `shop.v1.PurchaseService`: purchases validated, published to Kafka as the purchase event of
//! docs/KAFKA.md, and read back from `stage.purchases` once the Kafka ingest has landed them.
//!
//! Creating a purchase:
//! 1. The request's own fields are checked (ids, quantity, price, currency, time, extras,
//!    idempotency key); nothing is looked up for a request that fails here.
//! 2. With an idempotency key already recorded in PostgreSQL (`purchase_requests`), the same
//!    fields return the recorded purchase, other fields are `ALREADY_EXISTS`.
//! 3. The product must be in `stage.products` (its seller and, by default, its price are taken
//!    from there) and the customer must be an active customer in PostgreSQL.
//! 4. The event is built, checked with the Kafka ingest's own decoder, recorded (with a key)
//!    and published by an idempotent producer keyed by `purchase_id`; the record is marked
//!    published once Kafka acknowledged. Kafka not acknowledging within the publish timeout is
//!    `UNAVAILABLE`, and the recorded event is published by the next retry with the same key,
//!    byte for byte, under a row lock, so concurrent retries publish it once.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Decimal128Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{Int32Type, Int64Type};
use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use shop_lake::{Lake, LakeCatalog};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::pb::purchase_service_server::PurchaseService;
use crate::pb::{
    CreatePurchaseRequest, CreatePurchaseResponse, GetPurchaseRequest, GetPurchaseResponse,
    ListPurchasesRequest, ListPurchasesResponse, Purchase,
};
use crate::{
    Filter, Limits, ProductApi, collect, context, decimal, decode_token, encode_token, internal,
    micros, page_size, positive, postgres_error, timestamp,
};

const TOKEN: &str = "purchases";
/// Namespace of the purchase ids derived from a customer's idempotency keys (UUID v5), so
/// that a key maps to one purchase_id even without the PostgreSQL record.
const KEY_NAMESPACE: uuid::Uuid = uuid::uuid!("1c0e3f5a-8a0b-5d7e-9a55-53686f704b65");
/// Longest idempotency key.
pub const MAX_KEY_LEN: usize = 200;
/// Largest `extras` object, as JSON.
pub const MAX_EXTRAS_BYTES: usize = 16 * 1024;
/// Age of an unpublished request record after which a retry first looks for its purchase in
/// the lake: well inside the Kafka ingest's 15-minute window of repeated ids.
pub const LAKE_CHECK_AFTER: Duration = Duration::from_secs(10 * 60);
/// How far ahead of the server's clock `purchased_at` may be (clock skew of clients).
pub const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Where purchases are published.
#[derive(Debug, Clone)]
pub struct PurchaseConfig {
    /// Topic of the purchase events.
    pub topic: String,
    /// Longest wait for Kafka's acknowledgement before `UNAVAILABLE`.
    pub publish_timeout: Duration,
}

impl Default for PurchaseConfig {
    fn default() -> Self {
        Self {
            topic: shop_types::topics::PURCHASES.into(),
            publish_timeout: Duration::from_secs(10),
        }
    }
}

/// An idempotent Kafka producer with a bounded delivery time.
#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("topic", &self.topic)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    /// A producer for `brokers` (nothing is connected until the first publish).
    pub fn new(brokers: &str, config: &PurchaseConfig) -> Result<Self, rdkafka::error::KafkaError> {
        let timeout_ms = config.publish_timeout.as_millis().max(1).to_string();
        // librdkafka's floor for the connection setup timeout.
        let setup_ms = config.publish_timeout.as_millis().max(1000).to_string();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", &timeout_ms)
            .set("socket.connection.setup.timeout.ms", &setup_ms)
            .create()?;
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            timeout: config.publish_timeout,
        })
    }

    /// Publishes `payload` keyed by `key`; `UNAVAILABLE` when Kafka does not acknowledge in
    /// time.
    pub async fn publish(&self, key: &str, payload: &[u8]) -> Result<(), Status> {
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        let unavailable = |why: String| {
            tracing::warn!(topic = %self.topic, %why, "publishing a purchase failed");
            Status::unavailable(format!(
                "Kafka did not acknowledge the purchase on topic {:?}: {why}. It may or may \
                 not have been published: Retry with the same idempotency_key, which publishes \
                 it at most once",
                self.topic
            ))
        };
        let send = self.producer.send(record, self.timeout);
        // librdkafka gives up after message.timeout.ms; the outer bound is a safety net.
        match tokio::time::timeout(self.timeout + Duration::from_secs(2), send).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((cause, _))) => Err(unavailable(cause.to_string())),
            Err(_) => Err(unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// `shop.v1.PurchaseService`.
#[derive(Clone)]
pub struct PurchaseApi {
    products: ProductApi,
    ctx: SessionContext,
    limits: Limits,
    postgres: Option<PgPool>,
    kafka: Option<KafkaPublisher>,
}

/// A create request whose own fields are valid.
struct Checked {
    customer_id: i64,
    product_id: i64,
    quantity: i32,
    unit_price: Option<String>,
    currency: String,
    purchased_at: Option<DateTime<Utc>>,
    extras: Option<serde_json::Value>,
    key: Option<String>,
}

impl Checked {
    /// The client's fields as recorded with an idempotency key, as canonical JSON text (keys
    /// sorted): a retry must match them exactly.
    fn fingerprint(&self) -> String {
        serde_json::json!({
            "customer_id": self.customer_id,
            "product_id": self.product_id,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "currency": self.currency,
            "purchased_at": self.purchased_at.map(|t| t.timestamp_micros()),
            "extras": self.extras,
        })
        .to_string()
    }
}

impl PurchaseApi {
    /// Reads through `catalog`; creating needs both `postgres` (customers, idempotency keys)
    /// and `kafka`, and answers `FAILED_PRECONDITION` without them.
    /// `products` is the product service's own (one product index per server).
    pub fn new(
        lake: &Lake,
        catalog: &Arc<LakeCatalog>,
        products: ProductApi,
        postgres: Option<PgPool>,
        kafka: Option<KafkaPublisher>,
        limits: Limits,
    ) -> Self {
        Self {
            products,
            ctx: context(lake, catalog, &limits),
            limits,
            postgres,
            kafka,
        }
    }

    fn check(r: CreatePurchaseRequest, now: DateTime<Utc>) -> Result<Checked, Status> {
        let customer_id = positive("customer_id", r.customer_id)?;
        let product_id = positive("product_id", r.product_id)?;
        if !(1..=1_000_000).contains(&r.quantity) {
            return Err(Status::invalid_argument(format!(
                "quantity must be between 1 and 1000000, got {}",
                r.quantity
            )));
        }
        let unit_price = decimal("unit_price", &r.unit_price, 10, 2)?;
        let currency = if r.currency.is_empty() {
            "EUR".to_string()
        } else if r.currency.len() == 3 && r.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            r.currency
        } else {
            return Err(Status::invalid_argument(format!(
                "currency {:?} is not a three-letter ISO 4217 code such as \"EUR\"",
                r.currency
            )));
        };
        let purchased_at = match &r.purchased_at {
            None => None,
            Some(ts) => {
                let us = micros("purchased_at", ts)?;
                let at = DateTime::from_timestamp_micros(us).expect("checked range");
                let floor = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z")
                    .expect("valid constant")
                    .with_timezone(&Utc);
                if at < floor {
                    return Err(Status::invalid_argument(format!(
                        "purchased_at {} is before 2000-01-01",
                        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                    )));
                }
                if at > now + MAX_CLOCK_SKEW {
                    return Err(Status::invalid_argument(format!(
                        "purchased_at {} is in the future (the server's time is {})",
                        at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                        now.to_rfc3339_opts(SecondsFormat::Secs, true)
                    )));
                }
                Some(at)
            }
        };
        let extras = match &r.extras {
            None => None,
            Some(s) => {
                let value = serde_json::to_value(s).map_err(|e| {
                    Status::invalid_argument(format!("extras cannot be written as JSON: {e}"))
                })?;
                if has_nul(&value) {
                    return Err(Status::invalid_argument(
                        "extras must not contain NUL characters",
                    ));
                }
                let size = value.to_string().len();
                if size > MAX_EXTRAS_BYTES {
                    return Err(Status::invalid_argument(format!(
                        "extras is {size} bytes as JSON, more than {MAX_EXTRAS_BYTES}"
                    )));
                }
                Some(value)
            }
        };
        let key = r.idempotency_key;
        if key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Status::invalid_argument(format!(
                "idempotency_key must be 1 to {MAX_KEY_LEN} printable ASCII characters"
            )));
        }
        Ok(Checked {
            customer_id,
            product_id,
            quantity: r.quantity,
            unit_price,
            currency,
            purchased_at,
            extras,
            key: (!key.is_empty()).then_some(key),
        })
    }

    fn backends(&self) -> Result<(&PgPool, &KafkaPublisher), Status> {
        match (&self.postgres, &self.kafka) {
            (Some(pg), Some(kafka)) => Ok((pg, kafka)),
            _ => Err(Status::failed_precondition(
                "creating purchases needs PostgreSQL (customers, idempotency keys) and Kafka: \
                 start the server with --pg-url and --kafka-brokers",
            )),
        }
    }

    /// Builds the event of a checked request: product and customer must exist.
    async fn event(
        &self,
        pg: &PgPool,
        c: &Checked,
        now: DateTime<Utc>,
    ) -> Result<(String, Vec<u8>), Status> {
        let product = self.products.lookup(c.product_id).await?.ok_or_else(|| {
            Status::not_found(format!(
                "product_id {}: no such product in stage.products",
                c.product_id
            ))
        })?;
        let active: Option<bool> =
            sqlx::query_scalar("SELECT is_active FROM customers WHERE customer_id = $1")
                .bind(c.customer_id)
                .fetch_optional(pg)
                .await
                .map_err(postgres_error)?;
        match active {
            None => {
                return Err(Status::not_found(format!(
                    "customer_id {}: no such customer",
                    c.customer_id
                )));
            }
            Some(false) => {
                return Err(Status::failed_precondition(format!(
                    "customer_id {} is not an active customer",
                    c.customer_id
                )));
            }
            Some(true) => {}
        }
        let purchase_id = match &c.key {
            Some(key) => uuid::Uuid::new_v5(
                &KEY_NAMESPACE,
                format!("{}/{key}", c.customer_id).as_bytes(),
            ),
            None => uuid::Uuid::new_v4(),
        }
        .hyphenated()
        .to_string();
        let at = c.purchased_at.unwrap_or(now);
        let mut event = serde_json::json!({
            "schema_version": shop_types::purchases::SCHEMA_VERSION,
            "purchase_id": purchase_id,
            "customer_id": c.customer_id,
            "product_id": c.product_id,
            "seller_id": product.seller_id,
            "quantity": c.quantity,
            "unit_price": c.unit_price.clone().unwrap_or(product.price),
            "currency": c.currency,
            "purchased_at": at.to_rfc3339_opts(SecondsFormat::Micros, true),
        });
        if let Some(extras) = &c.extras {
            event["extras"] = extras.clone();
        }
        let payload = serde_json::to_vec(&event).expect("JSON serialises");
        // What the ingest would refuse is never published.
        shop_types::purchases::decode(&payload, Some(now.timestamp_millis()))
            .map_err(|why| internal("checking the purchase event against the contract", why))?;
        Ok((purchase_id, payload))
    }

    /// Publishes the recorded event of `(customer, key)` unless it was published already;
    /// returns the event and whether it had been published before this call.
    async fn publish_recorded(
        &self,
        pg: &PgPool,
        kafka: &KafkaPublisher,
        customer: i64,
        key: &str,
    ) -> Result<(Vec<u8>, bool), Status> {
        let mut tx = pg.begin().await.map_err(postgres_error)?;
        // The row lock makes concurrent retries of one key publish once.
        let (purchase_id, event, published, age_secs): (uuid::Uuid, String, bool, f64) =
            sqlx::query_as(
                "SELECT purchase_id, event, published_at IS NOT NULL, \
                 extract(epoch FROM now() - created_at)::float8 FROM purchase_requests \
                 WHERE customer_id = $1 AND idempotency_key = $2 FOR UPDATE",
            )
            .bind(customer)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(postgres_error)?;
        if published {
            return Ok((event.into_bytes(), true));
        }
        let id = purchase_id.hyphenated().to_string();
        // An earlier attempt may have reached Kafka without being marked (an acknowledgement
        // that timed out, a caller that went away). Within the ingest's window of repeated
        // ids a second copy is dropped there; past it, the lake is asked first.
        let late = age_secs > LAKE_CHECK_AFTER.as_secs_f64();
        let landed = late && !self.query(by_id(&id), 1).await?.is_empty();
        if landed {
            tracing::info!(purchase_id = %id, "an unmarked purchase is in the lake already");
        } else {
            kafka.publish(&id, event.as_bytes()).await?;
        }
        sqlx::query(
            "UPDATE purchase_requests SET published_at = now() \
             WHERE customer_id = $1 AND idempotency_key = $2",
        )
        .bind(customer)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(postgres_error)?;
        // Published but not marked (PostgreSQL failed just now): a retry publishes the same
        // event again, which the ingest drops as a repeated purchase_id.
        tx.commit().await.map_err(postgres_error)?;
        Ok((event.into_bytes(), landed))
    }

    async fn create(&self, r: CreatePurchaseRequest) -> Result<(Purchase, bool), Status> {
        let now = Utc::now();
        let checked = Self::check(r, now)?;
        let (pg, kafka) = self.backends()?;
        let Some(key) = &checked.key else {
            let (purchase_id, payload) = self.event(pg, &checked, now).await?;
            kafka.publish(&purchase_id, &payload).await?;
            return Ok((from_event(&payload)?, false));
        };
        let customer = checked.customer_id;
        let fingerprint = checked.fingerprint();
        let select = "SELECT request FROM purchase_requests \
                      WHERE customer_id = $1 AND idempotency_key = $2";
        let recorded: Option<String> = sqlx::query_scalar(select)
            .bind(customer)
            .bind(key)
            .fetch_optional(pg)
            .await
            .map_err(postgres_error)?;
        let recorded = match recorded {
            Some(request) => request,
            None => {
                let (purchase_id, payload) = self.event(pg, &checked, now).await?;
                let purchase_id = uuid::Uuid::parse_str(&purchase_id).expect("our own UUID");
                let inserted = sqlx::query(
                    "INSERT INTO purchase_requests \
                     (customer_id, idempotency_key, request, purchase_id, event) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (customer_id, idempotency_key) DO NOTHING",
                )
                .bind(customer)
                .bind(key)
                .bind(&fingerprint)
                .bind(purchase_id)
                .bind(String::from_utf8(payload).expect("JSON is UTF-8"))
                .execute(pg)
                .await
                .map_err(postgres_error)?
                .rows_affected();
                if inserted == 1 {
                    fingerprint.clone()
                } else {
                    // Another request with this key was recorded in between.
                    sqlx::query_scalar(select)
                        .bind(customer)
                        .bind(key)
                        .fetch_one(pg)
                        .await
                        .map_err(postgres_error)?
                }
            }
        };
        if recorded != fingerprint {
            return Err(Status::already_exists(format!(
                "idempotency_key {key:?} was used for a different purchase request; use a new \
                 key for a new purchase"
            )));
        }
        let (payload, replayed) = self.publish_recorded(pg, kafka, customer, key).await?;
        Ok((from_event(&payload)?, replayed))
    }

    async fn query(&self, filter: Filter, limit: usize) -> Result<Vec<Purchase>, Status> {
        if !crate::table_exists(&self.ctx, "purchases").await? {
            return Ok(Vec::new());
        }
        let frame = filter
            .select(
                &self.ctx,
                "purchase_id, customer_id, product_id, seller_id, quantity, unit_price, \
                 currency, purchased_at, extras",
                "shop.stage.purchases",
                "purchased_at, purchase_id",
                limit,
            )
            .await
            .map_err(|e| internal("reading stage.purchases", e))?;
        let batches = collect(frame, &self.limits, "reading stage.purchases").await?;
        let mut purchases = Vec::new();
        for batch in &batches {
            purchases.extend(to_purchases(batch).map_err(Status::internal)?);
        }
        Ok(purchases)
    }
}

/// Whether a key or string anywhere in `value` holds a NUL, which PostgreSQL cannot store.
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The purchase an event (as built by [`PurchaseApi`]) describes.
fn from_event(payload: &[u8]) -> Result<Purchase, Status> {
    let p = shop_types::purchases::decode(payload, None)
        .map_err(|why| internal("reading a recorded purchase event", why))?;
    Ok(Purchase {
        purchase_id: p.purchase_id,
        customer_id: p.customer_id,
        product_id: p.product_id,
        seller_id: p.seller_id,
        quantity: p.quantity,
        unit_price: format!("{}.{:02}", p.unit_price / 100, p.unit_price % 100),
        currency: p.currency,
        purchased_at: Some(timestamp(p.purchased_at)),
        extras: extras(p.extras.as_deref())?,
    })
}

fn extras(text: Option<&str>) -> Result<Option<pbjson_types::Struct>, Status> {
    text.map(|t| serde_json::from_str(t).map_err(|e| internal("reading extras", e)))
        .transpose()
}

fn to_purchases(batch: &RecordBatch) -> Result<Vec<Purchase>, String> {
    let strings = |i: usize, name: &str| {
        batch
            .column(i)
            .as_string_opt::<i32>()
            .ok_or(format!("{name} is not a string"))
    };
    let ints = |i: usize, name: &str| {
        batch
            .column(i)
            .as_primitive_opt::<Int64Type>()
            .ok_or(format!("{name} is not an Int64"))
    };
    let ids = strings(0, "purchase_id")?;
    let customers = ints(1, "customer_id")?;
    let products = ints(2, "product_id")?;
    let sellers = ints(3, "seller_id")?;
    let quantities = batch
        .column(4)
        .as_primitive_opt::<Int32Type>()
        .ok_or("quantity is not an Int32")?;
    let prices = batch
        .column(5)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .ok_or("unit_price is not a decimal")?;
    let currencies = strings(6, "currency")?;
    let times = batch
        .column(7)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or("purchased_at is not a timestamp")?;
    let all_extras = strings(8, "extras")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Purchase {
                purchase_id: ids.value(i).to_string(),
                customer_id: customers.value(i),
                product_id: products.value(i),
                seller_id: sellers.value(i),
                quantity: quantities.value(i),
                unit_price: prices.value_as_string(i),
                currency: currencies.value(i).to_string(),
                purchased_at: Some(timestamp(times.value(i))),
                extras: extras(all_extras.is_valid(i).then(|| all_extras.value(i)))
                    .map_err(|s| s.message().to_string())?,
            })
        })
        .collect()
}

/// An RFC 3339 literal with microseconds, as DataFusion compares it with a UTC timestamp.
/// The purchase with this id.
fn by_id(id: &str) -> Filter {
    let mut filter = Filter::default();
    let p = filter.param(ScalarValue::Utf8(Some(id.to_string())));
    filter.and(format!("purchase_id = {p}"));
    filter
}

/// A time (µs since the epoch, UTC) as a parameter of the type of `purchased_at`.
fn time_param(us: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into()))
}

/// The day of a time as a parameter of the type of `dt` (days since the epoch).
fn day_param(us: i64) -> ScalarValue {
    ScalarValue::Date32(Some(us.div_euclid(86_400_000_000) as i32))
}

#[tonic::async_trait]
impl PurchaseService for PurchaseApi {
    async fn create_purchase(
        &self,
        request: Request<CreatePurchaseRequest>,
    ) -> Result<Response<CreatePurchaseResponse>, Status> {
        let (purchase, replayed) = self.create(request.into_inner()).await?;
        if !replayed {
            tracing::info!(purchase_id = %purchase.purchase_id, "purchase published");
        }
        Ok(Response::new(CreatePurchaseResponse {
            purchase: Some(purchase),
            replayed,
        }))
    }

    async fn get_purchase(
        &self,
        request: Request<GetPurchaseRequest>,
    ) -> Result<Response<GetPurchaseResponse>, Status> {
        let raw = request.into_inner().purchase_id;
        let id = uuid::Uuid::parse_str(&raw)
            .map_err(|_| Status::invalid_argument(format!("purchase_id {raw:?} is not a UUID")))?
            .hyphenated()
            .to_string();
        let mut found = self.query(by_id(&id), 1).await?;
        match found.pop() {
            Some(purchase) => Ok(Response::new(GetPurchaseResponse {
                purchase: Some(purchase),
            })),
            None => Err(Status::not_found(format!(
                "purchase_id {id}: no such purchase in stage.purchases (a new purchase appears \
                 there once the Kafka ingest has written it, usually within seconds)"
            ))),
        }
    }

    async fn list_purchases(
        &self,
        request: Request<ListPurchasesRequest>,
    ) -> Result<Response<ListPurchasesResponse>, Status> {
        let r = request.into_inner();
        let customer = positive("customer_id", r.customer_id)?;
        let page = page_size(r.page_size)?;
        let from = r
            .from_time
            .as_ref()
            .map(|t| micros("from_time", t))
            .transpose()?;
        let to = r
            .to_time
            .as_ref()
            .map(|t| micros("to_time", t))
            .transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(Status::invalid_argument("from_time must be before to_time"));
        }
        let range = [
            customer.to_string(),
            from.map(|v| v.to_string()).unwrap_or_default(),
            to.map(|v| v.to_string()).unwrap_or_default(),
        ];
        let mut filter = Filter::default();
        let p = filter.param(ScalarValue::Int64(Some(customer)));
        filter.and(format!("customer_id = {p}"));
        if let Some(from) = from {
            let (day, at) = (
                filter.param(day_param(from)),
                filter.param(time_param(from)),
            );
            filter.and(format!("dt >= {day} AND purchased_at >= {at}"));
        }
        if let Some(to) = to {
            let (day, at) = (
                filter.param(day_param(to - 1)),
                filter.param(time_param(to)),
            );
            filter.and(format!("dt <= {day} AND purchased_at < {at}"));
        }
        if !r.page_token.is_empty() {
            let parts = decode_token(TOKEN, &r.page_token)?;
            let bad = || {
                Status::invalid_argument(
                    "page_token belongs to another customer_id, from_time or to_time",
                )
            };
            if parts.len() != 5 || parts[..3] != range {
                return Err(bad());
            }
            let at: i64 = parts[3].parse().map_err(|_| bad())?;
            // A forged time out of range is refused like any other forged token.
            micros("page_token", &timestamp(at)).map_err(|_| bad())?;
            let id = uuid::Uuid::parse_str(&parts[4]).map_err(|_| bad())?;
            let day = filter.param(day_param(at));
            let t = filter.param(time_param(at));
            let after = filter.param(ScalarValue::Utf8(Some(id.hyphenated().to_string())));
            filter.and(format!(
                "dt >= {day} AND (purchased_at > {t} OR (purchased_at = {t} AND purchase_id > {after}))"
            ));
        }
        let mut purchases = self.query(filter, page + 1).await?;
        let next_page_token = if purchases.len() > page {
            purchases.truncate(page);
            let last = purchases.last().expect("a full page");
            let at = last
                .purchased_at
                .as_ref()
                .and_then(|t| micros("purchased_at", t).ok())
                .unwrap_or(0);
            let mut parts: Vec<&str> = range.iter().map(String::as_str).collect();
            let at = at.to_string();
            parts.push(&at);
            parts.push(&last.purchase_id);
            encode_token(TOKEN, &parts)
        } else {
            String::new()
        };
        Ok(Response::new(ListPurchasesResponse {
            purchases,
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> CreatePurchaseRequest {
        CreatePurchaseRequest {
            customer_id: 1,
            product_id: 2,
            quantity: 3,
            unit_price: "9.5".into(),
            currency: "USD".into(),
            purchased_at: None,
            extras: None,
            idempotency_key: "k-1".into(),
        }
    }

    /// Every rule of a create request refuses with the field named.
    #[test]
    fn create_requests_are_checked_field_by_field() {
        let now = Utc::now();
        let ok = PurchaseApi::check(valid(), now).unwrap();
        assert_eq!(ok.unit_price.as_deref(), Some("9.50"));
        assert_eq!(ok.currency, "USD");
        assert_eq!(ok.key.as_deref(), Some("k-1"));
        let defaults = PurchaseApi::check(
            CreatePurchaseRequest {
                unit_price: String::new(),
                currency: String::new(),
                idempotency_key: String::new(),
                ..valid()
            },
            now,
        )
        .unwrap();
        assert_eq!(
            (
                defaults.unit_price,
                defaults.currency.as_str(),
                defaults.key
            ),
            (None, "EUR", None)
        );
        let ts = |t: DateTime<Utc>| Some(timestamp(t.timestamp_micros()));
        let big: pbjson_types::Struct = serde_json::from_value(serde_json::json!({
            "blob": "x".repeat(MAX_EXTRAS_BYTES)
        }))
        .unwrap();
        let nul: pbjson_types::Struct =
            serde_json::from_value(serde_json::json!({"note": ["ok", "a\u{0}b"]})).unwrap();
        let cases: Vec<(&str, CreatePurchaseRequest)> = vec![
            (
                "customer_id",
                CreatePurchaseRequest {
                    customer_id: 0,
                    ..valid()
                },
            ),
            (
                "product_id",
                CreatePurchaseRequest {
                    product_id: -4,
                    ..valid()
                },
            ),
            (
                "quantity",
                CreatePurchaseRequest {
                    quantity: 0,
                    ..valid()
                },
            ),
            (
                "quantity",
                CreatePurchaseRequest {
                    quantity: 1_000_001,
                    ..valid()
                },
            ),
            (
                "unit_price",
                CreatePurchaseRequest {
                    unit_price: "-1".into(),
                    ..valid()
                },
            ),
            (
                "unit_price",
                CreatePurchaseRequest {
                    unit_price: "1.999".into(),
                    ..valid()
                },
            ),
            (
                "unit_price",
                CreatePurchaseRequest {
                    unit_price: "ten".into(),
                    ..valid()
                },
            ),
            (
                "currency",
                CreatePurchaseRequest {
                    currency: "euro".into(),
                    ..valid()
                },
            ),
            (
                "currency",
                CreatePurchaseRequest {
                    currency: "eur".into(),
                    ..valid()
                },
            ),
            (
                "purchased_at",
                CreatePurchaseRequest {
                    purchased_at: ts(now + chrono::Duration::minutes(6)),
                    ..valid()
                },
            ),
            (
                "purchased_at",
                CreatePurchaseRequest {
                    purchased_at: ts(DateTime::parse_from_rfc3339("1999-12-31T23:59:59Z")
                        .unwrap()
                        .with_timezone(&Utc)),
                    ..valid()
                },
            ),
            (
                "purchased_at",
                CreatePurchaseRequest {
                    purchased_at: Some(pbjson_types::Timestamp {
                        seconds: 1,
                        nanos: -5,
                    }),
                    ..valid()
                },
            ),
            (
                "extras",
                CreatePurchaseRequest {
                    extras: Some(big),
                    ..valid()
                },
            ),
            (
                "extras",
                CreatePurchaseRequest {
                    extras: Some(nul),
                    ..valid()
                },
            ),
            (
                "idempotency_key",
                CreatePurchaseRequest {
                    idempotency_key: "k".repeat(201),
                    ..valid()
                },
            ),
            (
                "idempotency_key",
                CreatePurchaseRequest {
                    idempotency_key: "tab\there".into(),
                    ..valid()
                },
            ),
        ];
        for (field, request) in cases {
            let err = PurchaseApi::check(request, now).err().expect(field);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}");
            assert!(
                err.message().starts_with(field),
                "{field}: {}",
                err.message()
            );
        }
        // A little skew is fine.
        let skewed = CreatePurchaseRequest {
            purchased_at: ts(now + chrono::Duration::minutes(4)),
            ..valid()
        };
        assert!(PurchaseApi::check(skewed, now).is_ok());
    }

    #[test]
    fn fingerprints_tell_retries_from_reuses() {
        let now = Utc::now();
        let a = PurchaseApi::check(valid(), now).unwrap().fingerprint();
        let again = PurchaseApi::check(valid(), now + chrono::Duration::seconds(30))
            .unwrap()
            .fingerprint();
        assert_eq!(a, again, "a retry later has the same fields");
        let other = PurchaseApi::check(
            CreatePurchaseRequest {
                quantity: 4,
                ..valid()
            },
            now,
        )
        .unwrap()
        .fingerprint();
        assert_ne!(a, other);
    }

    #[test]
    fn time_parameters_have_the_lake_types() {
        assert_eq!(
            time_param(1_764_000_000_123_456),
            ScalarValue::TimestampMicrosecond(Some(1_764_000_000_123_456), Some("UTC".into()))
        );
        // 2025-11-24 is day 20,416 since the epoch; a time before 1970 falls on the day before.
        assert_eq!(
            day_param(1_764_000_000_123_456),
            ScalarValue::Date32(Some(20_416))
        );
        assert_eq!(day_param(-1), ScalarValue::Date32(Some(-1)));
    }
}
