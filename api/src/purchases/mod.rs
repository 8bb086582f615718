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

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use shop_lake::{Lake, LakeCatalog};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::pb::purchase_service_server::PurchaseService;
use crate::pb::{
    CreatePurchaseRequest, CreatePurchaseResponse, GetPurchaseRequest, GetPurchaseResponse,
    ListPurchasesRequest, ListPurchasesResponse, Purchase,
};
use crate::{
    Filter, Limits, ProductApi, context, decode_token, encode_token, internal, micros, page_size,
    positive, postgres_error, timestamp,
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

mod lake;
mod publisher;
mod records;
mod validation;

pub use publisher::{KafkaPublisher, PurchaseConfig};

use lake::{by_id, day_param, from_event, time_param};
use validation::Checked;

/// `shop.v1.PurchaseService`.
#[derive(Clone)]
pub struct PurchaseApi {
    products: ProductApi,
    ctx: SessionContext,
    limits: Limits,
    postgres: Option<PgPool>,
    kafka: Option<KafkaPublisher>,
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
