//! Idempotency records (`purchase_requests` in PostgreSQL): a request with a key is recorded
//! before its event is published, and its recorded event is what every retry publishes.

use sqlx::PgPool;
use tonic::Status;

use super::{KafkaPublisher, LAKE_CHECK_AFTER, PurchaseApi, by_id};
use crate::postgres_error;

impl PurchaseApi {
    /// Publishes the recorded event of `(customer, key)` unless it was published already;
    /// returns the event and whether it had been published before this call.
    pub(super) async fn publish_recorded(
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
}
