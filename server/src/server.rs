//! The gRPC server: the Flight SQL service and the shop API behind authentication, with
//! `GetSchema`, TLS, connection limits, keep-alives and graceful shutdown.
//!
//! arrow-flight's blanket `FlightService` for a `FlightSqlService` answers `GetSchema` with
//! UNIMPLEMENTED, so [`ShopFlight`] implements `FlightService` itself: it delegates to the Flight
//! SQL dispatch and answers `GetSchema` from the planner. Credentials and permissions are checked
//! for every gRPC call in front of all services ([`crate::edge`]).

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
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use shop_api::pb::product_service_server::ProductServiceServer;
use shop_api::pb::purchase_service_server::PurchaseServiceServer;
use shop_api::pb::seller_service_server::SellerServiceServer;

use crate::auth::{AuthConfig, Authenticator};
use crate::conn::ConnectionLimits;
use crate::edge::EdgeLayer;
use crate::error::Error;
use crate::executor::QueryExecutor;
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
    /// Connection limits of each port.
    pub connections: ConnectionLimits,
    /// On shutdown, how long running calls may go on before their queries are cancelled.
    pub shutdown_grace: Duration,
    pub catalog: LakeCatalogOptions,
    /// Address of the REST/JSON gateway of the shop API; `None`: no gateway.
    pub http_listen: Option<SocketAddr>,
    /// PostgreSQL and Kafka for the shop API; calls that need a missing one answer
    /// `FAILED_PRECONDITION`.
    pub api: ApiBackends,
}

/// The shop API's backends besides the lake.
#[derive(Debug, Clone, Default)]
pub struct ApiBackends {
    /// Sellers, customers (checked by CreatePurchase) and idempotency keys.
    pub postgres: Option<sqlx::PgPool>,
    /// Where CreatePurchase publishes.
    pub kafka: Option<shop_api::KafkaPublisher>,
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
    #[error("cannot listen on {addr} (REST/JSON): {cause}")]
    BindHttp {
        addr: SocketAddr,
        cause: std::io::Error,
    },
    #[error("invalid TLS configuration of the REST/JSON port: {0}")]
    HttpTls(String),
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(tonic_reflection::server::Error),
    #[error("cannot start the query threads: {0}")]
    Executor(std::io::Error),
}

/// gRPC service name of Flight, for the health service.
pub const FLIGHT_SERVICE: &str = "arrow.flight.protocol.FlightService";

/// A server running in the background.
pub struct RunningServer {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    tls: bool,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    /// The catalog refresher and the REST port's TLS accept loop.
    background: Vec<JoinHandle<()>>,
    engine: Arc<Engine>,
    executor: Arc<QueryExecutor>,
    shutdown_grace: Duration,
}

/// After the grace period and the cancellation of the queries, how long the connections get to
/// close before they are dropped.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the REST/JSON gateway, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The address as a Flight URI: `grpc://…`, or `grpc+tls://…` with TLS.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "grpc+tls" } else { "grpc" };
        format!("{scheme}://{}", self.addr)
    }

    /// Queries planned or running now.
    pub fn running_queries(&self) -> usize {
        self.engine.running()
    }

    /// Stops accepting calls and lets running calls finish for the grace period; then cancels
    /// the queries still running, gives the connections a few seconds to close, and ends.
    pub async fn stop(self) -> Result<(), tonic::transport::Error> {
        for stop in self.stop {
            let _ = stop.send(());
        }
        for task in &self.background {
            task.abort();
        }
        let aborts: Vec<_> = self.tasks.iter().map(JoinHandle::abort_handle).collect();
        let tasks = self.tasks;
        let mut wait_all = std::pin::pin!(async move {
            let mut result = Ok(());
            for task in tasks {
                if let Ok(Err(e)) = task.await {
                    result = Err(e);
                }
            }
            result
        });
        let result = match tokio::time::timeout(self.shutdown_grace, &mut wait_all).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    grace = ?self.shutdown_grace,
                    "calls still running after the shutdown grace period; cancelling their queries"
                );
                self.engine.cancel_all();
                match tokio::time::timeout(SHUTDOWN_DRAIN, &mut wait_all).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("connections still open; closing them");
                        for abort in &aborts {
                            abort.abort();
                        }
                        Ok(())
                    }
                }
            }
        };
        self.executor.shutdown();
        result
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
    // The API's queries get the memory and time bounds of one Flight SQL query.
    let api_limits = shop_api::QueryLimits {
        memory: config.limits.memory_per_query,
        timeout: config.limits.query_timeout,
    };
    let products = shop_api::ProductApi::with_limits(&lake, &catalog, api_limits);
    let purchases = shop_api::PurchaseApi::new(
        &lake,
        &catalog,
        products.clone(),
        config.api.postgres.clone(),
        config.api.kafka.clone(),
        api_limits,
    );
    let sellers = shop_api::SellerApi::new(config.api.postgres.clone());
    let executor = Arc::new(
        QueryExecutor::new(QueryExecutor::threads_for(
            config.limits.max_concurrent_queries,
        ))
        .map_err(StartError::Executor)?,
    );
    let engine = Arc::new(Engine::new(
        &lake,
        catalog,
        config.limits.clone(),
        Arc::clone(&executor),
    ));
    let auth = Arc::new(Authenticator::new(config.auth.clone()));
    let service = ShopFlight {
        sql: Arc::new(SqlService::new(Arc::clone(&engine), Arc::clone(&auth))),
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

    let http_listener = match config.http_listen {
        Some(http) => {
            let listener = TcpListener::bind(http)
                .await
                .map_err(|cause| StartError::BindHttp { addr: http, cause })?;
            let bound = listener
                .local_addr()
                .map_err(|cause| StartError::BindHttp { addr: http, cause })?;
            Some((listener, bound))
        }
        None => None,
    };
    let pems = config.tls.as_ref().map(read_tls_pems).transpose()?;
    let identity = pems
        .as_ref()
        .map(|(cert, key)| Identity::from_pem(cert, key));
    // Built before anything is spawned, so that a bad certificate leaves nothing running.
    let http_acceptor = match (&pems, &http_listener) {
        (Some((cert, key)), Some(_)) => {
            Some(crate::http_tls::acceptor(cert, key).map_err(StartError::HttpTls)?)
        }
        _ => None,
    };
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // JDBC forwards connection properties as headers; the 8 KiB default is too small.
        .http2_max_header_list_size(64 * 1024)
        // A client that opens and resets streams in a loop (the HTTP/2 rapid-reset attack).
        .http2_max_pending_accept_reset_streams(Some(100))
        .max_concurrent_streams(Some(256));
    if let Some(identity) = &identity {
        builder = builder
            // A client that starts a handshake and stops must not keep its place for the idle
            // timeout: the same bound as the REST port's handshakes.
            .tls_config(
                ServerTlsConfig::new()
                    .identity(identity.clone())
                    .timeout(crate::http_tls::HANDSHAKE_TIMEOUT),
            )
            .map_err(StartError::Tls)?;
    }
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // The shop API on the same port, behind the same authentication (crate::edge); health and
    // reflection are open, as load balancers and grpcurl expect.
    let (health, health_service) = tonic_health::server::health_reporter();
    for service in std::iter::once(FLIGHT_SERVICE).chain(shop_api::SERVICE_NAMES) {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shop_api::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Each reflection service lists only itself unless both are registered.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection().build_v1().map_err(StartError::Reflection)?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(StartError::Reflection)?;
    let gateway = crate::rest::Gateway {
        products: products.clone(),
        purchases: purchases.clone(),
        sellers: sellers.clone(),
        auth: Arc::clone(&auth),
        openapi: Arc::new(crate::openapi::document()),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let router = builder
        .layer(EdgeLayer::new(Arc::clone(&auth)))
        .add_service(flight)
        .add_service(ProductServiceServer::new(products))
        .add_service(PurchaseServiceServer::new(purchases))
        .add_service(SellerServiceServer::new(sellers))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let grpc_incoming = crate::conn::incoming(listener, config.connections, "gRPC");
    let mut tasks = vec![tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(grpc_incoming, async {
                let _ = stopped.await;
            })
            .await
    })];
    let mut stops = vec![stop];
    let http_addr = http_listener.as_ref().map(|(_, bound)| *bound);
    let mut background = vec![refresher];
    if let Some((listener, http)) = http_listener {
        // HTTP/1.1 and HTTP/2, with the certificate of the gRPC port; TLS is terminated here
        // (crate::http_tls) so that HTTP/1.1-only clients can negotiate it.
        let router = Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .http2_max_pending_accept_reset_streams(Some(100))
            .max_concurrent_streams(Some(256))
            .add_routes(crate::rest::router(gateway).into());
        let accepted = crate::conn::incoming(listener, config.connections, "REST");
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let shutdown = async {
            let _ = stopped.await;
        };
        match http_acceptor {
            Some(acceptor) => {
                let (incoming, accept) = crate::http_tls::incoming(accepted, acceptor);
                background.push(accept);
                tasks.push(tokio::spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, shutdown)
                        .await
                }));
            }
            None => tasks.push(tokio::spawn(async move {
                router
                    .serve_with_incoming_shutdown(accepted, shutdown)
                    .await
            })),
        }
        tracing::info!(addr = %http, tls = config.tls.is_some(), "REST/JSON gateway listening");
    }
    tracing::info!(%addr, lake = %lake.location(), tls = config.tls.is_some(), auth = !config.auth.users.is_empty(), "Flight SQL server listening");
    Ok(RunningServer {
        addr,
        http_addr,
        tls: config.tls.is_some(),
        stop: stops,
        tasks,
        background,
        engine,
        executor,
        shutdown_grace: config.shutdown_grace,
    })
}

/// The certificate chain and key PEM files, with errors that say which file is wrong.
fn read_tls_pems(tls: &TlsConfig) -> Result<(Vec<u8>, Vec<u8>), StartError> {
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
    Ok((
        read(&tls.cert, "certificate", "CERTIFICATE-----")?,
        read(&tls.key, "private key", "PRIVATE KEY-----")?,
    ))
}

/// The Flight service: authentication on every call, then the Flight SQL dispatch.
#[derive(Clone)]
pub struct ShopFlight {
    sql: Arc<SqlService>,
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
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Error::Unsupported(
            "ListFlights is not supported: use Flight SQL commands (GetTables, statements)".into(),
        )
        .into())
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(self.sql.as_ref(), request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
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
        crate::service::check_ticket(&request.get_ref().ticket)?;
        FlightService::do_get(self.sql.as_ref(), request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(self.sql.as_ref(), request).await
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Error::Unsupported("DoExchange is not supported".into()).into())
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(self.sql.as_ref(), request).await
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = ["CreatePreparedStatement", "ClosePreparedStatement"].map(|name| {
            Ok(ActionType {
                r#type: name.into(),
                description: format!("Flight SQL {name}"),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(actions))))
    }
}
