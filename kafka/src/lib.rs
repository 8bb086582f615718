//! Kafka for the shop's workers.
//!
//! - [`consumer`]: the one consumer loop. It owns the client configuration, polling,
//!   rebalances, the flush cadence, offset commits, lag, the health file and shutdown; a
//!   [`Sink`] says where each partition starts, what a message becomes, what a flush makes
//!   durable and what a revoke drops. The Kafka → lake worker (`shop-ingest`) and the Kafka →
//!   ClickHouse loader (`shop-aggregates`) are sinks.
//! - [`admin`]: creating a topic.

pub mod admin;
pub mod consumer;

pub use consumer::{ConsumerConfig, Flushed, Sink, StartOffset, run};

/// Errors of the Kafka client itself (a sink's own errors are its own type).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka at {brokers}: {what}")]
    Kafka {
        brokers: String,
        what: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka at {brokers}: cannot create the topic {topic}: {code}")]
    CreateTopic {
        brokers: String,
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
}

impl Error {
    /// A `map_err` adapter naming the brokers and what was being done.
    pub fn kafka(
        brokers: &str,
        what: &'static str,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let brokers = brokers.to_string();
        move |source| Self::Kafka {
            brokers,
            what,
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
