//! The Flight SQL server over the shop's lake.
//!
//! How this crate is laid out:
//! - [`guard`]: the read-only SQL policy and complexity limits, applied to every SQL text before
//!   planning.
//! - [`query`]: planning and streaming one query within the memory, spill, time, concurrency and
//!   result limits ([`Limits`]), on the [`executor`]'s threads; [`functions`] bounds the
//!   functions that make large values.
//! - [`params`]: parameter batches of `DoPut`, read defensively.
//! - [`service`]: the Flight SQL commands (statements, prepared statements, metadata).
//! - [`metadata`]: `GetSqlInfo`, `GetXdbcTypeInfo`, column metadata and key listings.
//! - [`auth`]: Basic → bearer-token authentication, roles, the brake on guessing; [`edge`]
//!   applies it to every gRPC call.
//! - [`conn`]: connection limits and timeouts of both ports.
//! - [`server`]: opening the engine, binding, TLS, the gRPC router with authentication on every
//!   call, `GetSchema`, the HTTP port for [`Extensions`], shutdown.
//! - [`error`]: the one place errors become gRPC status codes.

pub mod auth;
pub mod conn;
pub mod edge;
pub mod error;
pub mod executor;
pub mod functions;
pub mod guard;
mod http_tls;
pub mod metadata;
pub mod params;
pub mod query;
pub mod server;
pub mod service;

pub use auth::{AuthConfig, Role};
pub use conn::ConnectionLimits;
pub use error::Error;
pub use query::Limits;
pub use server::{
    Extensions, RunningServer, Server, ServerConfig, StartError, TlsConfig, bind, start,
};
