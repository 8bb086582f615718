//! The Flight SQL server's options (`[server]`) and the commands that serve: `serve`, `quickstart`, and the shop API's backends.

use super::*;

/// The Flight SQL server's options. Every option is also a `SHOP_*` variable and a key of
/// `[server]`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerArgs {
    /// Address of the gRPC port (Flight SQL) [default: 127.0.0.1:50051]
    #[arg(long, env = "SHOP_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Write the bound address to this file once the server accepts connections.
    #[arg(long, env = "SHOP_READY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_file: Option<PathBuf>,
    /// Address of the REST/JSON gateway of the shop API, or "off" [default: 127.0.0.1:8000]
    #[arg(long, env = "SHOP_HTTP_LISTEN", value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// Write the REST gateway's bound address to this file once it accepts connections.
    #[arg(long, env = "SHOP_HTTP_READY_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_ready_file: Option<PathBuf>,
    /// File of user:password lines; turns authentication on. SHOP_AUTH_USERS
    /// ("alice:secret,bob:pw") does the same from the environment.
    #[arg(long, env = "SHOP_AUTH_USERS_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_users_file: Option<PathBuf>,
    /// Roles of users who are more than readers: "bob=writer,root=admin". Readers run SQL and
    /// read the shop API; writers also create purchases and sellers; admins may do everything.
    #[arg(long, env = "SHOP_AUTH_ROLES", value_name = "USER=ROLE,…")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_roles: Option<String>,
    /// Lifetime of a bearer token issued by Handshake, in seconds, at most a year [default: 43200]
    #[arg(long, env = "SHOP_AUTH_TOKEN_TTL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token_ttl_secs: Option<u64>,
    /// TLS certificate chain (PEM); with --tls-key turns TLS on.
    #[arg(long, env = "SHOP_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SHOP_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Memory one query may use before it spills to disk or fails, e.g. 512MiB, 2GiB [default: 2GiB]
    #[arg(long, env = "SHOP_QUERY_MEMORY_LIMIT", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_memory_limit: Option<String>,
    /// Disk one query may fill with spill files before it fails, e.g. 4GiB [default: 8GiB]
    #[arg(long, env = "SHOP_QUERY_SPILL_LIMIT", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_spill_limit: Option<String>,
    /// Largest output of one call of repeat, lpad, rpad, replace, regexp_replace, array_repeat,
    /// array_resize, range or generate_series for one batch, e.g. 16MiB [default: 64MiB]
    #[arg(long, env = "SHOP_MAX_FUNCTION_OUTPUT", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_function_output: Option<String>,
    /// Time limit of one query, planning to last row, in seconds [default: 300]
    #[arg(long, env = "SHOP_QUERY_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_timeout_secs: Option<u64>,
    /// Queries running at once; more wait in the queue [default: 8]
    #[arg(long, env = "SHOP_MAX_CONCURRENT_QUERIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_queries: Option<usize>,
    /// Queries that may wait for a running one to end (the wait counts in the time limit);
    /// beyond them RESOURCE_EXHAUSTED; 0 refuses instead of waiting [default: 64]
    #[arg(long, env = "SHOP_MAX_QUEUED_QUERIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued_queries: Option<usize>,
    /// Rows one result may have [default: unlimited]
    #[arg(long, env = "SHOP_MAX_RESULT_ROWS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_result_rows: Option<u64>,
    /// Size one result may have in memory, e.g. 1GiB [default: 8GiB]
    #[arg(long, env = "SHOP_MAX_RESULT_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_result_bytes: Option<String>,
    /// While a query has produced nothing for this many seconds, an empty batch keeps the stream
    /// alive through proxies [default: 5]
    #[arg(long, env = "SHOP_IDLE_KEEPALIVE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_keepalive_secs: Option<u64>,
    /// Connections each port (gRPC, REST) keeps open at once; more are closed at once
    /// [default: 384]
    #[arg(long, env = "SHOP_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// A connection that neither reads nor writes for this many seconds is closed [default: 300]
    #[arg(long, env = "SHOP_CONNECTION_IDLE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_idle_secs: Option<u64>,
    /// On SIGTERM, seconds running calls may go on before their queries are cancelled
    /// [default: 10]
    #[arg(long, env = "SHOP_SHUTDOWN_GRACE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_secs: Option<u64>,
    /// How often the catalog looks for new tables and snapshots, in milliseconds [default: 2000]
    #[arg(long, env = "SHOP_CATALOG_REFRESH_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_refresh_ms: Option<u64>,
}

/// The server configuration with defaults applied, plus where to write the ready file.
#[derive(Debug)]
pub struct ResolvedServer {
    pub config: ServerConfig,
    pub ready_file: Option<PathBuf>,
    pub http_ready_file: Option<PathBuf>,
}

impl ServerArgs {
    pub fn resolve(&self, file: Option<&Path>) -> anyhow::Result<ResolvedServer> {
        let m: ServerArgs = layered(file, "server", self)?;
        let mut users = HashMap::new();
        if let Ok(text) = std::env::var("SHOP_AUTH_USERS") {
            users.extend(
                AuthConfig::parse_users(&text)
                    .map_err(|e| anyhow::anyhow!("SHOP_AUTH_USERS: {e}"))?,
            );
        }
        if let Some(path) = &m.auth_users_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the users file {}", path.display()))?;
            users.extend(
                AuthConfig::parse_users(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
        }
        let tls = match (m.tls_cert, m.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
            (None, None) => None,
            _ => bail!("TLS needs both tls_cert and tls_key"),
        };
        let defaults = Limits::default();
        let bytes = |value: &Option<String>, name: &str| -> anyhow::Result<Option<u64>> {
            value
                .as_deref()
                .map(|v| parse_bytes(v).with_context(|| format!("invalid {name} {v:?}")))
                .transpose()
        };
        let limits = Limits {
            memory_per_query: bytes(&m.query_memory_limit, "query_memory_limit")?
                .map_or(defaults.memory_per_query, |b| b as usize),
            spill_per_query: bytes(&m.query_spill_limit, "query_spill_limit")?
                .unwrap_or(defaults.spill_per_query),
            max_function_output: bytes(&m.max_function_output, "max_function_output")?
                .unwrap_or(defaults.max_function_output),
            query_timeout: m
                .query_timeout_secs
                .map_or(defaults.query_timeout, Duration::from_secs),
            max_concurrent_queries: m
                .max_concurrent_queries
                .unwrap_or(defaults.max_concurrent_queries),
            max_queued_queries: m.max_queued_queries.unwrap_or(defaults.max_queued_queries),
            max_result_rows: m.max_result_rows.or(defaults.max_result_rows),
            max_result_bytes: bytes(&m.max_result_bytes, "max_result_bytes")?
                .or(defaults.max_result_bytes),
            idle_keepalive: m
                .idle_keepalive_secs
                .map_or(defaults.idle_keepalive, |s| Duration::from_secs(s.max(1))),
        };
        if !(1..=1024).contains(&limits.max_concurrent_queries) {
            bail!("max_concurrent_queries must be between 1 and 1024");
        }
        if limits.max_queued_queries > 65_536 {
            bail!("max_queued_queries must be between 0 and 65536");
        }
        if limits.query_timeout.is_zero() || limits.query_timeout > Duration::from_secs(7 * 86_400)
        {
            bail!("query_timeout_secs must be between 1 and 604800 (a week)");
        }
        let connection_defaults = ConnectionLimits::default();
        let connections = ConnectionLimits {
            max_connections: m
                .max_connections
                .unwrap_or(connection_defaults.max_connections),
            idle_timeout: m
                .connection_idle_secs
                .map_or(connection_defaults.idle_timeout, Duration::from_secs),
            ..connection_defaults
        };
        if !(1..=1_000_000).contains(&connections.max_connections) {
            bail!("max_connections must be between 1 and 1000000");
        }
        if !(1..=86_400).contains(&connections.idle_timeout.as_secs()) {
            bail!("connection_idle_secs must be between 1 and 86400");
        }
        let shutdown_grace = Duration::from_secs(m.shutdown_grace_secs.unwrap_or(10));
        if shutdown_grace > Duration::from_secs(3600) {
            bail!("shutdown_grace_secs must be at most 3600");
        }
        let roles = match &m.auth_roles {
            Some(text) => {
                AuthConfig::parse_roles(text).map_err(|e| anyhow::anyhow!("auth_roles: {e}"))?
            }
            None => HashMap::new(),
        };
        let auth = AuthConfig {
            users,
            roles,
            token_ttl: Duration::from_secs(m.auth_token_ttl_secs.unwrap_or(12 * 3600)),
        };
        if !auth.users.is_empty() || !auth.roles.is_empty() || m.auth_token_ttl_secs.is_some() {
            auth.validate().map_err(|e| anyhow::anyhow!(e))?;
        }
        let http_listen = match m.http_listen.as_deref().map(str::trim) {
            None => Some("127.0.0.1:8000".parse().expect("valid address")),
            Some(off) if off.eq_ignore_ascii_case("off") => None,
            Some(addr) => Some(
                addr.parse::<SocketAddr>()
                    .with_context(|| format!("invalid http_listen {addr:?} (HOST:PORT or off)"))?,
            ),
        };
        let mut catalog = LakeCatalogOptions::default();
        if let Some(ms) = m.catalog_refresh_ms {
            catalog.refresh_interval = Duration::from_millis(ms.max(100));
        }
        Ok(ResolvedServer {
            config: ServerConfig {
                listen: m
                    .listen
                    .unwrap_or_else(|| "127.0.0.1:50051".parse().expect("valid address")),
                auth,
                tls,
                limits,
                connections,
                shutdown_grace,
                catalog,
                http_listen,
            },
            ready_file: m.ready_file,
            http_ready_file: m.http_ready_file,
        })
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub api: ShopApiArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub schedule: RefreshScheduleArgs,
    #[command(flatten)]
    pub maintain: MaintainScheduleArgs,
}

/// The backends of the shop API (gRPC and REST): sellers and customers in PostgreSQL, new
/// purchases published to Kafka. Without them those calls answer FAILED_PRECONDITION.
#[derive(Debug, Args)]
pub struct ShopApiArgs {
    #[command(flatten)]
    pub postgres: PostgresArgs,
    /// Kafka brokers that CreatePurchase publishes to, e.g. localhost:9092 (also the
    /// kafka_brokers key of [kafka]) [default: none, creating purchases is off]
    #[arg(long, env = "SHOP_KAFKA_BROKERS", value_name = "HOST:PORT,…")]
    pub kafka_brokers: Option<String>,
    /// Topic that CreatePurchase publishes to (created if missing).
    #[arg(long, env = "SHOP_KAFKA_TOPIC", default_value = shop_types::topics::PURCHASES)]
    pub topic: String,
    /// Longest wait for Kafka to acknowledge a new purchase before the call answers
    /// UNAVAILABLE, in milliseconds.
    #[arg(long, env = "SHOP_PUBLISH_TIMEOUT_MS", default_value_t = 10_000)]
    pub publish_timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Size of the demo shop: 1.0 is ~10k customers, 500 sellers, 5k products and ~1M
    /// purchases over 90 days.
    #[arg(long, env = "SHOP_DEMO_SCALE", default_value_t = 1.0)]
    pub scale: f64,
}
