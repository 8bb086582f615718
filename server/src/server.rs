//! The server: the Flight SQL service behind authentication, with `GetSchema`, TLS, connection
//! limits, keep-alives and graceful shutdown, and the HTTP port.
//!
//! Starting is three steps: [`Server::open`] opens the lake's catalog and the query engine;
//! other crates build their services over [`Server::catalog`], [`Server::auth`] and
//! [`Server::limits`] and hand them over as [`Extensions`]; [`Server::serve`] binds the ports
//! ([`bind`]), loads TLS ([`Tls::load`]) and serves the routers. This crate knows only Flight
//! SQL: the shop API (gRPC and REST) is such an extension, composed by the CLI.
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
use tonic::service::RoutesBuilder;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

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
    /// Address of the HTTP port (the routes of [`Extensions::http`]); `None`: no HTTP port.
    pub http_listen: Option<SocketAddr>,
}

impl ServerConfig {
    /// Every default on a free loopback port, no HTTP port: for tests and for embedding.
    pub fn on_loopback() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth: AuthConfig::default(),
            tls: None,
            limits: Limits::default(),
            connections: ConnectionLimits::default(),
            shutdown_grace: Duration::from_secs(10),
            catalog: LakeCatalogOptions::default(),
            http_listen: None,
        }
    }
}

/// What other crates serve beside Flight SQL, behind the same authentication.
#[derive(Default)]
pub struct Extensions {
    /// gRPC services on the Flight port, behind [`crate::edge`].
    pub grpc: RoutesBuilder,
    /// Their full names, reported SERVING by the health service.
    pub grpc_names: Vec<&'static str>,
    /// Their encoded file descriptor sets, for reflection.
    pub descriptor_sets: Vec<&'static [u8]>,
    /// Their methods that change data (`/package.Service/Method`): these need the writer role,
    /// every other method the reader role.
    pub write_methods: Vec<&'static str>,
    /// The routes of the HTTP port. They authorize their own requests with [`Server::auth`]
    /// (HTTP has no gRPC metadata to check before routing).
    pub http: Option<axum::Router>,
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
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read TLS file {path}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not hold a PEM {expected} (a '-----BEGIN …' block)")]
    TlsPem {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("invalid TLS configuration")]
    Tls(#[source] tonic::transport::Error),
    #[error("cannot read the lake at {location}")]
    Lake {
        location: String,
        #[source]
        source: shop_lake::Error,
    },
    #[error("cannot listen on {addr} (HTTP)")]
    BindHttp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS configuration of the HTTP port: {0}")]
    HttpTls(String),
    #[error("cannot build gRPC reflection")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error("cannot start the query threads")]
    Executor(#[source] std::io::Error),
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

    /// The bound address of the HTTP port, if it runs.
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

/// Opens the catalog over `lake`, binds `config.listen` and serves Flight SQL (without
/// extensions) until stopped.
pub async fn start(lake: Lake, config: ServerConfig) -> Result<RunningServer, StartError> {
    Server::open(lake, config)
        .await?
        .serve(Extensions::default())
        .await
}

/// The lake's catalog and the query engine, opened but not yet serving.
pub struct Server {
    lake: Lake,
    config: ServerConfig,
    catalog: Arc<LakeCatalog>,
    refresher: JoinHandle<()>,
    executor: Arc<QueryExecutor>,
    engine: Arc<Engine>,
    auth: Arc<Authenticator>,
}

impl Server {
    /// Reads the lake's catalog (an unreadable lake fails here), starts its refresher and the
    /// query threads.
    pub async fn open(lake: Lake, config: ServerConfig) -> Result<Self, StartError> {
        let catalog = LakeCatalog::new(lake.clone(), config.catalog.clone());
        catalog.refresh().await.map_err(|source| StartError::Lake {
            location: lake.location().to_string(),
            source,
        })?;
        let executor = Arc::new(
            QueryExecutor::new(QueryExecutor::threads_for(
                config.limits.max_concurrent_queries,
            ))
            .map_err(StartError::Executor)?,
        );
        let refresher = catalog.spawn_refresher();
        let engine = Arc::new(Engine::new(
            &lake,
            Arc::clone(&catalog),
            config.limits.clone(),
            Arc::clone(&executor),
        ));
        let auth = Arc::new(Authenticator::new(config.auth.clone()));
        Ok(Self {
            lake,
            config,
            catalog,
            refresher,
            executor,
            engine,
            auth,
        })
    }

    /// The catalog the queries read, refreshed in the background.
    pub fn catalog(&self) -> &Arc<LakeCatalog> {
        &self.catalog
    }

    /// The credentials and roles every call is checked against.
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// The limits of one query.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Binds the ports, loads TLS and serves Flight SQL with `extensions` until stopped.
    pub async fn serve(self, mut extensions: Extensions) -> Result<RunningServer, StartError> {
        let Self {
            lake,
            config,
            catalog: _,
            refresher,
            executor,
            engine,
            auth,
        } = self;
        // Everything that can fail comes before anything is spawned, so that a bad address or
        // certificate leaves nothing running.
        let result = async {
            let ports = bind(&config).await?;
            let tls = config.tls.as_ref().map(Tls::load).transpose()?;
            let http_acceptor = match (&tls, &ports.http) {
                (Some(tls), Some(_)) => Some(tls.http_acceptor()?),
                _ => None,
            };
            let http_routes = extensions.http.take();
            let grpc = grpc_router(tls.as_ref(), &engine, &auth, extensions).await?;
            Ok::<_, StartError>((ports, tls, http_acceptor, grpc, http_routes))
        }
        .await;
        let (ports, tls, http_acceptor, grpc, http_routes) = match result {
            Ok(parts) => parts,
            Err(e) => {
                refresher.abort();
                executor.shutdown();
                return Err(e);
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let grpc_incoming = crate::conn::incoming(ports.grpc, config.connections, "gRPC");
        let mut tasks = vec![tokio::spawn(async move {
            grpc.serve_with_incoming_shutdown(grpc_incoming, async {
                let _ = stopped.await;
            })
            .await
        })];
        let mut stops = vec![stop];
        let mut background = vec![refresher];
        let mut http_addr = None;
        match (ports.http, http_routes) {
            (Some((listener, http)), Some(routes)) => {
                // HTTP/1.1 and HTTP/2, with the certificate of the gRPC port; TLS is terminated
                // here (crate::http_tls) so that HTTP/1.1-only clients can negotiate it.
                let router = tonic::transport::Server::builder()
                    .accept_http1(true)
                    .http2_keepalive_interval(Some(Duration::from_secs(30)))
                    .http2_keepalive_timeout(Some(Duration::from_secs(20)))
                    .http2_max_pending_accept_reset_streams(Some(100))
                    .max_concurrent_streams(Some(256))
                    .add_routes(routes.into());
                let accepted = crate::conn::incoming(listener, config.connections, "HTTP");
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
                tracing::info!(addr = %http, tls = tls.is_some(), "HTTP port listening");
                http_addr = Some(http);
            }
            (Some((_, http)), None) => {
                tracing::warn!(addr = %http, "an HTTP address is configured but nothing is served on it; the port is closed");
            }
            (None, _) => {}
        }
        tracing::info!(addr = %ports.grpc_addr, lake = %lake.location(), tls = tls.is_some(), auth = !config.auth.users.is_empty(), "Flight SQL server listening");
        Ok(RunningServer {
            addr: ports.grpc_addr,
            http_addr,
            tls: tls.is_some(),
            stop: stops,
            tasks,
            background,
            engine,
            executor,
            shutdown_grace: config.shutdown_grace,
        })
    }
}

/// The bound ports.
pub struct Ports {
    pub grpc: TcpListener,
    pub grpc_addr: SocketAddr,
    /// The HTTP port and its bound address.
    pub http: Option<(TcpListener, SocketAddr)>,
}

/// Binds the gRPC port and, when configured, the HTTP port.
pub async fn bind(config: &ServerConfig) -> Result<Ports, StartError> {
    let grpc = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let grpc_addr = grpc.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let http = match config.http_listen {
        Some(http) => {
            let listener = TcpListener::bind(http)
                .await
                .map_err(|source| StartError::BindHttp { addr: http, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| StartError::BindHttp { addr: http, source })?;
            Some((listener, bound))
        }
        None => None,
    };
    Ok(Ports {
        grpc,
        grpc_addr,
        http,
    })
}

/// The certificate chain and key of both ports.
pub struct Tls {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Tls {
    /// Reads the PEM files, with errors that say which file is wrong.
    pub fn load(tls: &TlsConfig) -> Result<Self, StartError> {
        // rustls picks its crypto from the process default when more than one provider is built
        // in (ring here; aws-lc-rs comes with the Delta Lake crates' HTTP client): ring it is.
        // An error only means a default was installed already.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let (cert, key) = read_tls_pems(tls)?;
        Ok(Self { cert, key })
    }

    fn grpc(&self) -> ServerTlsConfig {
        // A client that starts a handshake and stops must not keep its place for the idle
        // timeout: the same bound as the HTTP port's handshakes.
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .timeout(crate::http_tls::HANDSHAKE_TIMEOUT)
    }

    fn http_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, StartError> {
        crate::http_tls::acceptor(&self.cert, &self.key).map_err(StartError::HttpTls)
    }
}

/// The gRPC port's router: Flight SQL and the extensions behind [`EdgeLayer`]; health and
/// reflection open, as load balancers and grpcurl expect.
async fn grpc_router(
    tls: Option<&Tls>,
    engine: &Arc<Engine>,
    auth: &Arc<Authenticator>,
    extensions: Extensions,
) -> Result<
    tonic::transport::server::Router<
        tower::layer::util::Stack<EdgeLayer, tower::layer::util::Identity>,
    >,
    StartError,
> {
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // JDBC forwards connection properties as headers; the 8 KiB default is too small.
        .http2_max_header_list_size(64 * 1024)
        // A client that opens and resets streams in a loop (the HTTP/2 rapid-reset attack).
        .http2_max_pending_accept_reset_streams(Some(100))
        .max_concurrent_streams(Some(256));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.grpc()).map_err(StartError::Tls)?;
    }
    let service = ShopFlight {
        sql: Arc::new(SqlService::new(Arc::clone(engine), Arc::clone(auth))),
    };
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (health, health_service) = tonic_health::server::health_reporter();
    for service in std::iter::once(FLIGHT_SERVICE).chain(extensions.grpc_names.iter().copied()) {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Each reflection service lists only itself unless both are registered.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for set in &extensions.descriptor_sets {
            builder = builder.register_encoded_file_descriptor_set(set);
        }
        builder
    };
    let reflection_v1 = reflection().build_v1().map_err(StartError::Reflection)?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(StartError::Reflection)?;
    let mut routes = extensions.grpc;
    routes
        .add_service(flight)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let edge = EdgeLayer::new(Arc::clone(auth), extensions.write_methods);
    Ok(builder.layer(edge).add_routes(routes.routes()))
}

/// The certificate chain and key PEM files, with errors that say which file is wrong.
fn read_tls_pems(tls: &TlsConfig) -> Result<(Vec<u8>, Vec<u8>), StartError> {
    let read = |path: &PathBuf, expected: &'static str, marker: &str| {
        let pem = std::fs::read(path).map_err(|source| StartError::TlsFile {
            path: path.clone(),
            source,
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
