//! Publishing purchase events to Kafka: an idempotent producer with a bounded delivery time.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tonic::Status;

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
