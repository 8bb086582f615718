//! `shop-analytics generate kafka`: realistic purchase events, and deliberately bad ones.
//!
//! Every event says what the ingest worker must make of it ([`Expected`]), so tests can check
//! the lake against the generator's intent rather than against the worker's own view.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use rand::Rng;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use super::{Error, Result};
use shop_demo::rng_for;

/// What the worker must do with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Land once in stage.purchases.
    Valid { purchase_id: String },
    /// Land once in the dead letters; `kind` says how it is broken.
    Poison { kind: &'static str },
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    /// `None` sends a message without a payload.
    pub payload: Option<Vec<u8>>,
    pub expected: Expected,
}

/// The ways an event can be bad.
pub const POISON_KINDS: [&str; 10] = [
    "not_json",
    "wrong_type",
    "negative_quantity",
    "bad_uuid",
    "bad_currency",
    "missing_field",
    "bad_time",
    "unknown_field",
    "no_payload",
    "duplicate",
];

/// `count` events from `seed`: purchases of the last 24 hours before `now`, a fraction
/// `poison_rate` of them broken in one of the [`POISON_KINDS`].
pub fn events(
    seed: u64,
    count: u64,
    poison_rate: f64,
    now: DateTime<Utc>,
) -> impl Iterator<Item = Event> {
    let mut rng = rng_for(seed, 7 << 32);
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    (0..count).map(move |_| {
        let id = uuid::Builder::from_random_bytes(rng.random())
            .into_uuid()
            .to_string();
        let at = now - chrono::Duration::milliseconds(rng.random_range(0..86_400_000));
        let cents: u32 = rng.random_range(99..50_000);
        let mut event = json!({
            "schema_version": 1,
            "purchase_id": id,
            "customer_id": rng.random_range(1..10_000_i64),
            "product_id": rng.random_range(1..5_000_i64),
            "seller_id": rng.random_range(1..500_i64),
            "quantity": rng.random_range(1..4_i32),
            "unit_price": format!("{}.{:02}", cents / 100, cents % 100),
            "currency": "EUR",
            "purchased_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        if rng.random_bool(0.1) {
            event["extras"] = json!({"coupon": "WINTER10", "channel": "app"});
        }
        if !rng.random_bool(poison_rate.clamp(0.0, 1.0)) {
            let payload = serde_json::to_vec(&event).expect("JSON serialises");
            if sent.len() < 10_000 {
                sent.push((id.clone(), payload.clone()));
            }
            return Event {
                key: id.clone(),
                payload: Some(payload),
                expected: Expected::Valid { purchase_id: id },
            };
        }
        let mut kind = POISON_KINDS[rng.random_range(0..POISON_KINDS.len())];
        if kind == "duplicate" && sent.is_empty() {
            kind = "not_json";
        }
        let payload = match kind {
            "not_json" => {
                let text = serde_json::to_string(&event).expect("JSON serialises");
                Some(text.as_bytes()[..text.len() / 2].to_vec())
            }
            "no_payload" => None,
            "duplicate" => {
                let (key, payload) = sent[rng.random_range(0..sent.len())].clone();
                return Event {
                    key,
                    payload: Some(payload),
                    expected: Expected::Poison { kind },
                };
            }
            _ => {
                match kind {
                    "wrong_type" => event["quantity"] = json!("two"),
                    "negative_quantity" => event["quantity"] = json!(-1),
                    "bad_uuid" => event["purchase_id"] = json!("not-a-uuid"),
                    "bad_currency" => event["currency"] = json!("euro"),
                    "missing_field" => {
                        event.as_object_mut().expect("object").remove("currency");
                    }
                    "bad_time" => event["purchased_at"] = json!("25/11/2026 18:00"),
                    "unknown_field" => event["discount"] = json!(0.1),
                    _ => unreachable!("every kind is handled"),
                }
                Some(serde_json::to_vec(&event).expect("JSON serialises"))
            }
        };
        Event {
            key: id,
            payload,
            expected: Expected::Poison { kind },
        }
    })
}

/// A producer as the shop's services use it: idempotent (no duplicates from its own retries),
/// acks from all replicas, bounded delivery time.
pub fn producer(brokers: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(|cause| {
            Error::from(shop_kafka::Error::kafka(brokers, "creating the producer")(
                cause,
            ))
        })
}

/// Sends `events` to `topic` keyed by purchase id, at most 10 000 in flight; calls `sent` with
/// each delivered count.
pub async fn produce(
    brokers: &str,
    topic: &str,
    events: impl Iterator<Item = Event>,
    mut sent: impl FnMut(u64),
) -> Result<u64> {
    let producer = producer(brokers)?;
    let mut in_flight = FuturesUnordered::new();
    let mut delivered = 0;
    let delivery = |r: Result<
        rdkafka::producer::future_producer::Delivery,
        (rdkafka::error::KafkaError, rdkafka::message::OwnedMessage),
    >| {
        r.map(|_| ()).map_err(|(cause, _)| {
            Error::from(shop_kafka::Error::kafka(brokers, "delivering an event")(
                cause,
            ))
        })
    };
    for event in events {
        let producer = producer.clone();
        let topic = topic.to_string();
        in_flight.push(async move {
            let mut record = FutureRecord::<String, Vec<u8>>::to(&topic).key(&event.key);
            if let Some(payload) = &event.payload {
                record = record.payload(payload);
            }
            producer.send(record, Duration::from_secs(30)).await
        });
        if in_flight.len() >= 10_000
            && let Some(result) = in_flight.next().await
        {
            delivery(result)?;
            delivered += 1;
            sent(1);
        }
    }
    while let Some(result) = in_flight.next().await {
        delivery(result)?;
        delivered += 1;
        sent(1);
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_types::purchases::decode;

    #[test]
    fn the_generator_means_what_it_says() {
        let now = Utc::now();
        let events: Vec<_> = events(5, 5_000, 0.2, now).collect();
        let mut seen = std::collections::HashSet::new();
        let mut kinds = std::collections::BTreeSet::new();
        for e in &events {
            let decoded = e
                .payload
                .as_deref()
                .ok_or_else(|| "no payload".to_string())
                .and_then(|p| decode(p, Some(now.timestamp_millis())));
            match &e.expected {
                Expected::Valid { purchase_id } => {
                    assert_eq!(decoded.unwrap().purchase_id, *purchase_id);
                    assert!(seen.insert(purchase_id.clone()), "valid ids are unique");
                }
                Expected::Poison { kind: "duplicate" } => {
                    let p = decoded.expect("a duplicate is well-formed");
                    assert!(
                        seen.contains(&p.purchase_id),
                        "a duplicate repeats a sent id"
                    );
                    assert_eq!(e.key, p.purchase_id);
                    kinds.insert("duplicate");
                }
                Expected::Poison { kind } => {
                    assert!(decoded.is_err(), "{kind} decoded");
                    kinds.insert(kind);
                }
            }
        }
        assert_eq!(kinds.len(), POISON_KINDS.len(), "{kinds:?}");
        let poison = events
            .iter()
            .filter(|e| matches!(e.expected, Expected::Poison { .. }))
            .count();
        assert!((800..1_200).contains(&poison), "{poison}");
    }
}
