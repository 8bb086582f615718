//! The purchase event contract (JSON, version 1) and its Arrow form.
//!
//! ```json
//! {"schema_version": 1,
//!  "purchase_id": "0b7e5d2c-…", "customer_id": 42, "product_id": 7, "seller_id": 3,
//!  "quantity": 2, "unit_price": "19.99", "currency": "EUR",
//!  "purchased_at": "2026-11-25T18:03:11.512Z",
//!  "extras": {"coupon": "XMAS"}}
//! ```
//!
//! The same message is `shop.v1.PurchaseEvent` in `proto/shop/v1/purchase_event.proto`. Rules
//! (every violation is a dead letter naming the field): `schema_version` 1; `purchase_id` a
//! UUID (stored lower-case, hyphenated); ids positive integers; `quantity` 1 – 1 000 000;
//! `unit_price` a decimal string (a JSON number is accepted) ≥ 0 with at most 2 decimals and
//! 10 integer digits; `currency` three upper-case letters (ISO 4217); `purchased_at` RFC 3339,
//! not before 2000 and not more than a day after the Kafka timestamp of the message (so a replay
//! judges a message exactly as the first read did); `extras` an optional JSON object, kept as
//! text. Unknown top-level fields are refused: new fields come with a new `schema_version`.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Decimal128Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::tables::{PURCHASES, PURCHASES_REJECTED};

/// The version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Schema of a batch of `stage.purchases` without its partition column (see [`with_day`]).
pub fn file_schema() -> SchemaRef {
    PURCHASES.schema_ref()
}

/// The partition column of `stage.purchases`: the purchase's day (UTC), after the file columns.
pub const DAY_COLUMN: &str = "dt";

/// Purchases of one day as the Delta table `stage.purchases` stores them: the columns of
/// [`file_schema`] plus [`DAY_COLUMN`].
pub fn with_day(batch: &RecordBatch, day: NaiveDate) -> RecordBatch {
    let days = (day - NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date")).num_days();
    let days = i32::try_from(days).expect("a purchase day fits Date32");
    let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        DAY_COLUMN,
        arrow::datatypes::DataType::Date32,
        false,
    )));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::Date32Array::from(vec![
        days;
        batch
            .num_rows(
            )
    ])));
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .expect("one more column of the same length")
}

/// Schema of the dead letters, `stage.purchases_rejected`.
pub fn rejected_schema() -> SchemaRef {
    PURCHASES_REJECTED.schema_ref()
}

/// Top-level fields of version 1.
const FIELDS: [&str; 10] = [
    "schema_version",
    "purchase_id",
    "customer_id",
    "product_id",
    "seller_id",
    "quantity",
    "unit_price",
    "currency",
    "purchased_at",
    "extras",
];

type Object = serde_json::Map<String, serde_json::Value>;

fn field<'a>(event: &'a Object, name: &str) -> Result<&'a serde_json::Value, String> {
    match event.get(name) {
        None | Some(serde_json::Value::Null) => Err(format!("{name} is missing")),
        Some(value) => Ok(value),
    }
}

fn integer(event: &Object, name: &str) -> Result<i64, String> {
    let value = field(event, name)?;
    value
        .as_i64()
        .ok_or_else(|| format!("{name} must be an integer, got {value}"))
}

fn string<'a>(event: &'a Object, name: &str) -> Result<&'a str, String> {
    let value = field(event, name)?;
    value
        .as_str()
        .ok_or_else(|| format!("{name} must be a string, got {value}"))
}

/// A validated purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub purchase_id: String,
    pub customer_id: i64,
    pub product_id: i64,
    pub seller_id: i64,
    pub quantity: i32,
    /// Cents.
    pub unit_price: i128,
    pub currency: String,
    /// Microseconds since the epoch, UTC.
    pub purchased_at: i64,
    pub extras: Option<String>,
}

impl Purchase {
    /// The day the purchase belongs to (its `dt` partition).
    pub fn day(&self) -> NaiveDate {
        DateTime::from_timestamp_micros(self.purchased_at)
            .expect("validated timestamp")
            .date_naive()
    }
}

/// Decodes and validates one message. `kafka_timestamp_ms` is the message's timestamp, the
/// reference for "not in the future"; `Err` is the reason for the dead letter.
pub fn decode(payload: &[u8], kafka_timestamp_ms: Option<i64>) -> Result<Purchase, String> {
    // Well-formed events take the typed path (no intermediate JSON tree); anything it rejects
    // is parsed again as a tree to say which field is wrong and why.
    let fields = match serde_json::from_slice::<Fields<'_>>(payload) {
        Ok(fields) => fields,
        Err(_) => fields_of_tree(payload)?,
    };
    validate(fields, kafka_timestamp_ms)
}

/// The fields of an event with their JSON types checked, values not yet.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields<'a> {
    schema_version: i64,
    #[serde(borrow)]
    purchase_id: Cow<'a, str>,
    customer_id: i64,
    product_id: i64,
    seller_id: i64,
    quantity: i64,
    unit_price: serde_json::Value,
    #[serde(borrow)]
    currency: Cow<'a, str>,
    #[serde(borrow)]
    purchased_at: Cow<'a, str>,
    #[serde(default)]
    extras: Option<serde_json::Value>,
}

/// The slow path: every type error names its field.
fn fields_of_tree(payload: &[u8]) -> Result<Fields<'static>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("not a JSON purchase event: {e}"))?;
    let serde_json::Value::Object(event) = value else {
        return Err("not a JSON purchase event: the message is not a JSON object".into());
    };
    if let Some(unknown) = event.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {unknown:?} (version {SCHEMA_VERSION} has: {})",
            FIELDS.join(", ")
        ));
    }
    let text = |name| string(&event, name).map(|s| Cow::Owned(s.to_string()));
    Ok(Fields {
        schema_version: integer(&event, "schema_version")?,
        purchase_id: text("purchase_id")?,
        customer_id: integer(&event, "customer_id")?,
        product_id: integer(&event, "product_id")?,
        seller_id: integer(&event, "seller_id")?,
        quantity: integer(&event, "quantity")?,
        unit_price: field(&event, "unit_price")?.clone(),
        currency: text("currency")?,
        purchased_at: text("purchased_at")?,
        extras: event.get("extras").cloned(),
    })
}

fn validate(event: Fields<'_>, kafka_timestamp_ms: Option<i64>) -> Result<Purchase, String> {
    if event.schema_version != i64::from(SCHEMA_VERSION) {
        return Err(format!(
            "schema_version {} is not supported (this worker reads {SCHEMA_VERSION})",
            event.schema_version
        ));
    }
    let raw_id = &event.purchase_id;
    let purchase_id = uuid::Uuid::parse_str(raw_id)
        .map_err(|_| format!("purchase_id {raw_id:?} is not a UUID"))?
        .hyphenated()
        .to_string();
    for (name, value) in [
        ("customer_id", event.customer_id),
        ("product_id", event.product_id),
        ("seller_id", event.seller_id),
    ] {
        if value <= 0 {
            return Err(format!("{name} must be positive, got {value}"));
        }
    }
    let quantity = event.quantity;
    if !(1..=1_000_000).contains(&quantity) {
        return Err(format!(
            "quantity must be between 1 and 1000000, got {quantity}"
        ));
    }
    let unit_price = parse_price(&event.unit_price, "unit_price")?;
    let currency = &event.currency;
    if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
        return Err(format!(
            "currency {currency:?} is not a three-letter ISO 4217 code"
        ));
    }
    let raw_at = &event.purchased_at;
    let at = DateTime::parse_from_rfc3339(raw_at)
        .map_err(|e| format!("purchased_at {raw_at:?} is not an RFC 3339 time: {e}"))?
        .with_timezone(&Utc);
    let floor = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z")
        .expect("valid constant")
        .with_timezone(&Utc);
    if at < floor {
        return Err(format!("purchased_at {at} is before 2000"));
    }
    if let Some(sent) = kafka_timestamp_ms.and_then(DateTime::from_timestamp_millis)
        && at > sent + chrono::Duration::days(1)
    {
        return Err(format!(
            "purchased_at {at} is more than a day after the message was sent ({sent})"
        ));
    }
    let extras = match event.extras {
        None | Some(serde_json::Value::Null) => None,
        Some(map @ serde_json::Value::Object(_)) => Some(map.to_string()),
        Some(other) => return Err(format!("extras must be a JSON object, got {other}")),
    };
    Ok(Purchase {
        purchase_id,
        customer_id: event.customer_id,
        product_id: event.product_id,
        seller_id: event.seller_id,
        quantity: quantity as i32,
        unit_price,
        currency: currency.to_string(),
        purchased_at: at.timestamp_micros(),
        extras,
    })
}

/// A price in cents from `"19.99"` (or the JSON number 19.99); `field` names it in errors.
pub fn parse_price(value: &serde_json::Value, field: &str) -> Result<i128, String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(format!("{field} must be a decimal string, got {other}")),
    };
    let bad = || format!("{field} {text:?} is not a decimal with at most 2 decimals");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    if int.is_empty()
        || int.len() > 10
        || frac.len() > 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        if int.starts_with('-') {
            return Err(format!("{field} must be ≥ 0, got {text}"));
        }
        return Err(bad());
    }
    let cents: i128 = format!("{int}{frac:0<2}").parse().map_err(|_| bad())?;
    Ok(cents)
}

/// Builds a `stage.purchases` file batch.
pub struct PurchaseBatch {
    purchase_id: StringBuilder,
    customer_id: Int64Builder,
    product_id: Int64Builder,
    seller_id: Int64Builder,
    quantity: Int32Builder,
    unit_price: Decimal128Builder,
    currency: StringBuilder,
    purchased_at: TimestampMicrosecondBuilder,
    extras: StringBuilder,
}

impl Default for PurchaseBatch {
    fn default() -> Self {
        Self {
            purchase_id: StringBuilder::new(),
            customer_id: Int64Builder::new(),
            product_id: Int64Builder::new(),
            seller_id: Int64Builder::new(),
            quantity: Int32Builder::new(),
            unit_price: Decimal128Builder::new()
                .with_precision_and_scale(12, 2)
                .expect("valid decimal type"),
            currency: StringBuilder::new(),
            purchased_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            extras: StringBuilder::new(),
        }
    }
}

impl PurchaseBatch {
    pub fn push(&mut self, p: &Purchase) {
        self.purchase_id.append_value(&p.purchase_id);
        self.customer_id.append_value(p.customer_id);
        self.product_id.append_value(p.product_id);
        self.seller_id.append_value(p.seller_id);
        self.quantity.append_value(p.quantity);
        self.unit_price.append_value(p.unit_price);
        self.currency.append_value(&p.currency);
        self.purchased_at.append_value(p.purchased_at);
        self.extras.append_option(p.extras.as_deref());
    }

    pub fn finish(mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.purchase_id.finish()),
            Arc::new(self.customer_id.finish()),
            Arc::new(self.product_id.finish()),
            Arc::new(self.seller_id.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.unit_price.finish()),
            Arc::new(self.currency.finish()),
            Arc::new(self.purchased_at.finish()),
            Arc::new(self.extras.finish()),
        ];
        RecordBatch::try_new(file_schema(), columns).expect("columns match the schema")
    }
}

/// One dead letter.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
    pub kafka_timestamp_ms: Option<i64>,
    pub rejected_at: DateTime<Utc>,
}

/// Builds a dead-letter batch.
pub fn rejected_batch(rows: &[Rejected]) -> RecordBatch {
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut key = BinaryBuilder::new();
    let mut payload = BinaryBuilder::new();
    let mut reason = StringBuilder::new();
    let mut sent = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for r in rows {
        topic.append_value(&r.topic);
        partition.append_value(r.partition);
        offset.append_value(r.offset);
        key.append_option(r.key.as_deref());
        payload.append_option(r.payload.as_deref());
        reason.append_value(&r.reason);
        sent.append_option(r.kafka_timestamp_ms.and_then(|ms| ms.checked_mul(1_000)));
        at.append_value(r.rejected_at.timestamp_micros());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(key.finish()),
        Arc::new(payload.finish()),
        Arc::new(reason.finish()),
        Arc::new(sent.finish()),
        Arc::new(at.finish()),
    ];
    RecordBatch::try_new(rejected_schema(), columns).expect("columns match the schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: Option<i64> = Some(1_764_000_000_000); // 2025-11-24T16:00:00Z

    fn event(overrides: &[(&str, serde_json::Value)]) -> Vec<u8> {
        let mut v = serde_json::json!({
            "schema_version": 1,
            "purchase_id": "0B7E5D2C-1A2B-4C3D-8E9F-001122334455",
            "customer_id": 42, "product_id": 7, "seller_id": 3,
            "quantity": 2, "unit_price": "19.9", "currency": "EUR",
            "purchased_at": "2025-11-24T18:03:11.512+01:00",
        });
        for (k, val) in overrides {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(*k);
            } else {
                v[*k] = val.clone();
            }
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_valid_event_is_normalised() {
        let p = decode(&event(&[]), SENT).unwrap();
        assert_eq!(p.purchase_id, "0b7e5d2c-1a2b-4c3d-8e9f-001122334455");
        assert_eq!(p.unit_price, 1990);
        assert_eq!(
            p.purchased_at,
            DateTime::parse_from_rfc3339("2025-11-24T17:03:11.512Z")
                .unwrap()
                .timestamp_micros()
        );
        assert_eq!(p.day(), NaiveDate::from_ymd_opt(2025, 11, 24).unwrap());
        let with_extras = decode(
            &event(&[
                ("extras", serde_json::json!({"coupon": "XMAS"})),
                ("unit_price", serde_json::json!(5)),
            ]),
            SENT,
        )
        .unwrap();
        assert_eq!(with_extras.extras.as_deref(), Some(r#"{"coupon":"XMAS"}"#));
        assert_eq!(with_extras.unit_price, 500);
    }

    #[test]
    fn every_rule_names_its_field() {
        use serde_json::json;
        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("schema_version", json!(2), "schema_version 2"),
            ("purchase_id", json!("nope"), "purchase_id"),
            ("customer_id", json!(0), "customer_id"),
            ("product_id", json!(-1), "product_id"),
            ("seller_id", json!(0), "seller_id"),
            ("quantity", json!(0), "quantity"),
            ("quantity", json!("two"), "quantity"),
            ("unit_price", json!("-1.00"), "unit_price must be ≥ 0"),
            ("unit_price", json!("1.999"), "unit_price"),
            ("unit_price", json!(true), "unit_price"),
            ("currency", json!("eur"), "currency"),
            ("purchased_at", json!("yesterday"), "purchased_at"),
            ("purchased_at", json!("1999-12-31T23:59:59Z"), "before 2000"),
            (
                "purchased_at",
                json!("2025-11-26T00:00:01Z"),
                "more than a day",
            ),
            ("currency", serde_json::Value::Null, "currency is missing"),
            ("surprise", json!(1), "unknown field \"surprise\""),
            ("extras", json!([1]), "extras must be a JSON object"),
        ];
        for (field, value, expected) in cases {
            let reason = decode(&event(&[(field, value.clone())]), SENT).unwrap_err();
            assert!(reason.contains(expected), "{field}={value}: {reason}");
        }
        let reason = decode(b"{not json", SENT).unwrap_err();
        assert!(reason.starts_with("not a JSON purchase event"), "{reason}");
    }
}
