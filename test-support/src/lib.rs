//! Real services for tests: each test gets its own PostgreSQL database, Kafka topic, S3 bucket or
//! ClickHouse database, named with a random suffix, and removes it with `cleanup()`.
//!
//! The services are the ones `scripts/services.sh up` starts on loopback; their addresses come
//! from the `SHOP_TEST_*` variables it writes (`source <(bash scripts/services.sh env)`). When a
//! variable is missing a test skips with a message, except when `SHOP_REQUIRE_SERVICES=1` or
//! `CI=true`: then it fails loudly, so CI can never pass by skipping.
//!
//! ```ignore
//! let Some(pg) = TestPostgres::create().await else { return };
//! // … use pg.pool() …
//! pg.cleanup().await;
//! ```
//!
//! A test that panics leaves its database, topic or bucket behind; `services.sh down` removes
//! them with the services' data directories.
//!
//! [`lake`] has local lakes in temporary folders, empty or holding the demo shop. The services
//! are behind the default feature `services`; without it (the Flight SQL server's tests) this
//! crate needs neither librdkafka nor sqlx.

pub mod lake;
#[cfg(feature = "services")]
mod services;

pub use lake::{TempLake, demo_lake, temp_lake};
#[cfg(feature = "services")]
pub use services::*;
