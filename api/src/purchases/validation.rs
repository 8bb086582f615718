//! A create request's own fields, checked before anything is looked up.

use chrono::{DateTime, SecondsFormat, Utc};
use tonic::Status;

use super::{MAX_CLOCK_SKEW, MAX_EXTRAS_BYTES, MAX_KEY_LEN, PurchaseApi};
use crate::pb::CreatePurchaseRequest;
use crate::{decimal, micros, positive};

/// A create request whose own fields are valid.
pub(super) struct Checked {
    pub(super) customer_id: i64,
    pub(super) product_id: i64,
    pub(super) quantity: i32,
    pub(super) unit_price: Option<String>,
    pub(super) currency: String,
    pub(super) purchased_at: Option<DateTime<Utc>>,
    pub(super) extras: Option<serde_json::Value>,
    pub(super) key: Option<String>,
}

impl Checked {
    /// The client's fields as recorded with an idempotency key, as canonical JSON text (keys
    /// sorted): a retry must match them exactly.
    pub(super) fn fingerprint(&self) -> String {
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
    pub(super) fn check(r: CreatePurchaseRequest, now: DateTime<Utc>) -> Result<Checked, Status> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp;

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
}
