//! The shop API's integration tests, in one binary (one link instead of one per file).
//!
//! - [`products`], [`purchases`]: the services over demo lakes, called directly.
//! - [`shop_api`]: health, reflection and authentication on the Flight SQL server's port.
//! - [`shop_services`]: every service over gRPC and REST against real PostgreSQL and Kafka.

mod products;
mod purchases;
mod shop_api;
mod shop_services;
