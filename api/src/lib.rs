//! The shop's API (`proto/shop/v1`), served by the Flight SQL server over gRPC and REST/JSON.
//!
//! - [`ProductApi`]: `shop.v1.ProductService`, products read from `stage.products` with
//!   DataFusion (point lookups and keyset-paginated, filtered listings).
//! - [`PurchaseApi`]: `shop.v1.PurchaseService`, purchases validated and published to Kafka
//!   (idempotent, with client idempotency keys kept in PostgreSQL), read back from
//!   `stage.purchases`.
//! - [`SellerApi`]: `shop.v1.SellerService`, sellers in PostgreSQL.
//! - [`rest`]: the same services as REST/JSON, described by [`openapi`].
//! - [`extensions`]: all of it as an extension of the Flight SQL server (`shop-server`): the
//!   CLI's `serve` composes the two.
//!
//! Bad requests are `INVALID_ARGUMENT` naming the field, unknown ids `NOT_FOUND`, a missing
//! backend (no catalogue yet, no PostgreSQL or Kafka configured) `FAILED_PRECONDITION`, a
//! backend that does not answer `UNAVAILABLE`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Datelike as _;
use tonic::Status;

mod extension;
pub mod openapi;
mod products;
mod purchases;
pub mod rest;
mod sellers;

pub use extension::{Backends, READ_METHODS, WRITE_METHODS, extensions, start};
pub use products::ProductApi;
pub use purchases::{KafkaPublisher, PurchaseApi, PurchaseConfig};
pub use sellers::SellerApi;

/// The generated messages and services of `shop.v1`, with their proto3 JSON mapping (serde).
pub mod pb {
    tonic::include_proto!("shop.v1");
    include!(concat!(env!("OUT_DIR"), "/shop.v1.serde.rs"));

    /// The encoded descriptors of `shop.v1`, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("shop_v1_descriptor");
}

/// Full gRPC names of the shop's services (health, reflection).
pub const SERVICE_NAMES: [&str; 3] = [
    "shop.v1.ProductService",
    "shop.v1.PurchaseService",
    "shop.v1.SellerService",
];

/// Bounds of the API's DataFusion queries: the Flight SQL server's, so that an API call is held
/// to the memory and time of one Flight SQL query.
pub use shop_server::Limits;

/// A `WHERE` clause for a lake read whose values are bound parameters: what a request carries
/// never becomes SQL text.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    params: Vec<datafusion::scalar::ScalarValue>,
}

impl Filter {
    /// Binds `value` and returns its placeholder (`$1`, `$2`, …) for a clause.
    pub(crate) fn param(&mut self, value: datafusion::scalar::ScalarValue) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// Adds a clause (written with placeholders from [`Filter::param`]).
    pub(crate) fn and(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `SELECT {columns} FROM {table} WHERE … ORDER BY {order}` limited to `limit` rows, with the
    /// parameters bound.
    pub(crate) async fn select(
        self,
        ctx: &datafusion::prelude::SessionContext,
        columns: &str,
        table: &str,
        order: &str,
        limit: usize,
    ) -> datafusion::error::Result<datafusion::prelude::DataFrame> {
        let filter = if self.clauses.is_empty() {
            "TRUE".to_string()
        } else {
            self.clauses.join(" AND ")
        };
        let sql = format!("SELECT {columns} FROM {table} WHERE {filter} ORDER BY {order}");
        let frame = ctx.sql(&sql).await?;
        let frame = if self.params.is_empty() {
            frame
        } else {
            frame.with_param_values(self.params)?
        };
        frame.limit(0, Some(limit))
    }
}

/// A session over `catalog` within `limits.memory_per_query`.
pub(crate) fn context(
    lake: &shop_lake::Lake,
    catalog: &std::sync::Arc<shop_lake::LakeCatalog>,
    limits: &Limits,
) -> datafusion::prelude::SessionContext {
    use shop_lake::session;
    session::context(
        session::session_config(),
        session::bounded_runtime(lake, limits.memory_per_query),
        catalog,
    )
}

/// Whether `stage.<table>` exists. A table that is there but cannot be read (a corrupt file) is
/// an error, not a missing table: "no purchases" or "load the catalogue first" would hide it.
pub(crate) async fn table_exists(
    ctx: &datafusion::prelude::SessionContext,
    table: &str,
) -> Result<bool, Status> {
    let Some(schema) = ctx
        .catalog(shop_lake::layout::CATALOG)
        .and_then(|c| c.schema(shop_lake::layout::STAGE))
    else {
        return Ok(false);
    };
    match schema.table(table).await {
        Ok(found) => Ok(found.is_some()),
        Err(e) => Err(internal(&format!("opening stage.{table}"), e)),
    }
}

/// Runs `frame` to its end within `limits.query_timeout`; `what` names it in errors.
pub(crate) async fn collect(
    frame: datafusion::prelude::DataFrame,
    limits: &Limits,
    what: &str,
) -> Result<Vec<arrow::array::RecordBatch>, Status> {
    match tokio::time::timeout(limits.query_timeout, frame.collect()).await {
        Ok(Ok(batches)) => Ok(batches),
        Ok(Err(datafusion::error::DataFusionError::ResourcesExhausted(why))) => Err(
            Status::resource_exhausted(format!("{what} needs more memory than allowed: {why}")),
        ),
        Ok(Err(e)) => Err(internal(what, e)),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "{what} took longer than {} s",
            limits.query_timeout.as_secs_f64()
        ))),
    }
}

/// Page size when a request gives none.
pub const DEFAULT_PAGE_SIZE: i32 = 100;
/// Largest page a request may ask for.
pub const MAX_PAGE_SIZE: i32 = 1000;

/// The page size of a list request: 0 is the default, 1 to [`MAX_PAGE_SIZE`] as asked.
pub(crate) fn page_size(requested: i32) -> Result<usize, Status> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n as usize),
        n => Err(Status::invalid_argument(format!(
            "page_size must be between 0 and {MAX_PAGE_SIZE}, got {n}"
        ))),
    }
}

/// An opaque page token: `kind:` and the parts, URL-safe base64. Parts must not contain `|`.
pub(crate) fn encode_token(kind: &str, parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{}", parts.join("|")))
}

/// The parts of a token of `kind`, `INVALID_ARGUMENT` for anything this service did not issue.
pub(crate) fn decode_token(kind: &str, token: &str) -> Result<Vec<String>, Status> {
    let bad = || Status::invalid_argument("page_token is not a token this service issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let rest = text
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(bad)?;
    Ok(rest.split('|').map(str::to_string).collect())
}

/// A positive id field, `INVALID_ARGUMENT` naming it otherwise.
pub(crate) fn positive(field: &str, value: i64) -> Result<i64, Status> {
    if value > 0 {
        Ok(value)
    } else {
        Err(Status::invalid_argument(format!(
            "{field} must be positive, got {value}"
        )))
    }
}

/// A non-negative decimal string with at most `scale` decimals and `int_digits` integer
/// digits, normalised to exactly `scale` decimals; `None` for "".
pub(crate) fn decimal(
    field: &str,
    text: &str,
    int_digits: usize,
    scale: usize,
) -> Result<Option<String>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if text.starts_with('-') {
        return Err(Status::invalid_argument(format!(
            "{field} must be ≥ 0, got {text}"
        )));
    }
    if int.is_empty()
        || int.len() > int_digits
        || frac.len() > scale
        || !digits(int)
        || !digits(frac)
    {
        return Err(Status::invalid_argument(format!(
            "{field} {text:?} is not a decimal ≥ 0 with at most {int_digits} integer digits and \
             {scale} decimals"
        )));
    }
    Ok(Some(format!("{int}.{frac:0<scale$}")))
}

/// A protobuf timestamp from microseconds since the epoch.
pub(crate) fn timestamp(micros: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Microseconds since the epoch of a protobuf timestamp, `INVALID_ARGUMENT` naming `field` for
/// one out of range (nanos outside 0..1e9, or beyond year 9999).
pub(crate) fn micros(field: &str, ts: &pbjson_types::Timestamp) -> Result<i64, Status> {
    let valid = (0..1_000_000_000).contains(&ts.nanos)
        && chrono::DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
            .is_some_and(|t| (1..=9999).contains(&t.year()));
    if !valid {
        return Err(Status::invalid_argument(format!(
            "{field} is not a valid time (seconds {}, nanos {})",
            ts.seconds, ts.nanos
        )));
    }
    Ok(ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000)
}

/// Logs a backend failure and turns it into a status that names what failed.
pub(crate) fn internal(what: &str, cause: impl std::fmt::Display) -> Status {
    tracing::error!(%cause, "{what} failed");
    Status::internal(format!("{what} failed: {cause}"))
}

/// PostgreSQL errors: unreachable is `UNAVAILABLE`, the rest `INTERNAL`; never the URL.
pub(crate) fn postgres_error(e: sqlx::Error) -> Status {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            tracing::warn!(cause = %e, "PostgreSQL is not reachable");
            Status::unavailable(format!("PostgreSQL is not reachable: {e}"))
        }
        _ => internal("a PostgreSQL statement", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_strangers_are_refused() {
        let token = encode_token("after", &["42", "x"]);
        assert_eq!(decode_token("after", &token).unwrap(), ["42", "x"]);
        for bad in [
            "",
            "!!",
            &URL_SAFE_NO_PAD.encode("before:3"),
            &encode_token("other", &["1"]),
        ] {
            let err = decode_token("after", bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(err.message().contains("page_token"));
        }
    }

    #[test]
    fn decimals_are_validated_and_normalised() {
        assert_eq!(decimal("p", "", 10, 2).unwrap(), None);
        assert_eq!(decimal("p", "12.5", 10, 2).unwrap().unwrap(), "12.50");
        assert_eq!(decimal("p", "7", 10, 2).unwrap().unwrap(), "7.00");
        assert_eq!(decimal("r", "0.1", 1, 4).unwrap().unwrap(), "0.1000");
        for bad in [
            "-1",
            "1.234",
            "1e3",
            "1.2.3",
            "' OR 1=1 --",
            ".5",
            "12345678901",
        ] {
            let err = decimal("max_price", bad, 10, 2).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(
                err.message().starts_with("max_price"),
                "{bad}: {}",
                err.message()
            );
        }
    }

    #[test]
    fn page_sizes_and_ids() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(1000).unwrap(), 1000);
        for bad in [-1, 1001] {
            assert!(page_size(bad).unwrap_err().message().contains("page_size"));
        }
        assert_eq!(positive("seller_id", 3).unwrap(), 3);
        assert!(
            positive("seller_id", 0)
                .unwrap_err()
                .message()
                .contains("seller_id")
        );
    }

    /// A query past the time limit is DEADLINE_EXCEEDED (and dropped), not left running.
    #[tokio::test]
    async fn queries_past_the_time_limit_are_deadline_exceeded() {
        let ctx = datafusion::prelude::SessionContext::new();
        // Far more rows than can be counted in 100 ms.
        let frame = ctx
            .sql("SELECT count(*) FROM generate_series(1, 100000000000)")
            .await
            .unwrap();
        let limits = Limits {
            query_timeout: std::time::Duration::from_millis(100),
            ..Limits::default()
        };
        let err = collect(frame, &limits, "counting").await.unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::DeadlineExceeded,
            "{}",
            err.message()
        );
        assert!(
            err.message().starts_with("counting took longer than 0.1 s"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn timestamps_round_trip_and_nonsense_is_refused() {
        for us in [0, 1, -1, 1_764_000_000_123_456] {
            assert_eq!(micros("t", &timestamp(us)).unwrap(), us);
        }
        for (seconds, nanos) in [(0, -1), (0, 1_000_000_000), (i64::MAX / 2, 0)] {
            let err =
                micros("purchased_at", &pbjson_types::Timestamp { seconds, nanos }).unwrap_err();
            assert!(
                err.message().starts_with("purchased_at"),
                "{}",
                err.message()
            );
        }
    }
}
