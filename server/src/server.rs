//! The gRPC server: the Flight SQL service behind authentication, with `GetSchema`, TLS,
//! keep-alives and graceful shutdown.
//!
//! arrow-flight's blanket `FlightService` for a `FlightSqlService` answers `GetSchema` with
//! UNIMPLEMENTED and has no hook for checking credentials on every call, so [`ShopFlight`]
//! implements `FlightService` itself: it checks the caller, then delegates to the Flight SQL
//! dispatch, and answers `GetSchema` from the planner.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, PollInfo, SchemaAsIpc, SchemaResult, Ticket,
};
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{AuthConfig, Authenticator};
use crate::error::Error;
use crate::query::{Engine, Limits};
use crate::service::SqlService;

/// Largest gRPC message accepted or sent (parameter batches, large result batches).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Everything the server needs besides the lake.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub auth: AuthConfig,
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    pub catalog: LakeCatalogOptions,
}

/// PEM certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot read TLS file {path}: {cause}")]
    TlsFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} does not hold a PEM {expected} (a '-----BEGIN …' block)")]
    TlsPem {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("invalid TLS configuration: {0}")]
    Tls(tonic::transport::Error),
    #[error("cannot read the lake at {location}: {cause}")]
    Lake {
        location: String,
        cause: shop_lake::Error,
    },
}

/// A server running in the background.
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    refresher: JoinHandle<()>,
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a Flight URI: `grpc://…`, or `grpc+tls://…` with TLS.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "grpc+tls" } else { "grpc" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting calls, lets running calls finish, and waits for the server to end.
    pub async fn stop(self) -> Result<(), tonic::transport::Error> {
        let _ = self.stop.send(());
        self.refresher.abort();
        self.task.await.unwrap_or(Ok(()))
    }

    /// Waits until the server ends (after `shutdown` resolves).
    pub async fn wait(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        shutdown.await;
        self.stop().await
    }
}

/// Opens the catalog over `lake`, binds `config.listen` and serves Flight SQL until stopped.
pub async fn start(lake: Lake, config: ServerConfig) -> Result<RunningServer, StartError> {
    let catalog = LakeCatalog::new(lake.clone(), config.catalog.clone());
    catalog.refresh().await.map_err(|source| StartError::Lake {
        location: lake.location().to_string(),
        cause: source,
    })?;
    let refresher = catalog.spawn_refresher();
    let engine = Arc::new(Engine::new(&lake, catalog, config.limits.clone()));
    let auth = Arc::new(Authenticator::new(config.auth.clone()));
    let service = ShopFlight {
        sql: Arc::new(SqlService::new(engine, auth)),
    };

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            cause: source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        cause: source,
    })?;

    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // JDBC forwards connection properties as headers; the 8 KiB default is too small.
        .http2_max_header_list_size(64 * 1024);
    if let Some(tls) = &config.tls {
        let read = |path: &PathBuf, expected: &'static str, marker: &str| {
            let pem = std::fs::read(path).map_err(|source| StartError::TlsFile {
                path: path.clone(),
                cause: source,
            })?;
            let text = String::from_utf8_lossy(&pem);
            if text.contains("-----BEGIN") && text.contains(marker) {
                Ok(pem)
            } else {
                Err(StartError::TlsPem {
                    path: path.clone(),
                    expected,
                })
            }
        };
        let identity = Identity::from_pem(
            read(&tls.cert, "certificate", "CERTIFICATE-----")?,
            read(&tls.key, "private key", "PRIVATE KEY-----")?,
        );
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(StartError::Tls)?;
    }
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (stop, stopped) = oneshot::channel::<()>();
    let router = builder.add_service(flight);
    let task = tokio::spawn(async move {
        router
            // TCP_NODELAY on every accepted socket: without it small replies wait for delayed
            // ACKs (~40 ms a call). The builder's tcp_nodelay does not apply to own listeners.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stopped.await;
                },
            )
            .await
    });
    tracing::info!(%addr, lake = %lake.location(), tls = config.tls.is_some(), auth = !config.auth.users.is_empty(), "Flight SQL server listening");
    Ok(RunningServer {
        addr,
        tls: config.tls.is_some(),
        stop,
        task,
        refresher,
    })
}

/// The Flight service: authentication on every call, then the Flight SQL dispatch.
#[derive(Clone)]
pub struct ShopFlight {
    sql: Arc<SqlService>,
}

impl ShopFlight {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.sql
            .authenticator()
            .check(request.metadata())
            .map_err(Status::from)
    }
}

type Inner = SqlService;

#[tonic::async_trait]
impl FlightService for ShopFlight {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(self.sql.as_ref(), request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.authorize(&request)?;
        Err(Error::Unsupported(
            "ListFlights is not supported: use Flight SQL commands (GetTables, statements)".into(),
        )
        .into())
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        FlightService::get_flight_info(self.sql.as_ref(), request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.authorize(&request)?;
        // Queries are planned synchronously, so the answer is always complete.
        let descriptor = request.get_ref().clone();
        let info = FlightService::get_flight_info(self.sql.as_ref(), request)
            .await?
            .into_inner();
        Ok(Response::new(PollInfo {
            info: Some(info),
            flight_descriptor: Some(descriptor),
            progress: Some(1.0),
            expiration_time: None,
        }))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.authorize(&request)?;
        let schema = self.sql.schema_of(request.get_ref()).await?;
        let result: SchemaResult = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(Error::Arrow)?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.authorize(&request)?;
        FlightService::do_get(self.sql.as_ref(), request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.authorize(&request)?;
        FlightService::do_put(self.sql.as_ref(), request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.authorize(&request)?;
        Err(Error::Unsupported("DoExchange is not supported".into()).into())
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.authorize(&request)?;
        FlightService::do_action(self.sql.as_ref(), request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.authorize(&request)?;
        let actions = ["CreatePreparedStatement", "ClosePreparedStatement"].map(|name| {
            Ok(ActionType {
                r#type: name.into(),
                description: format!("Flight SQL {name}"),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }
}
