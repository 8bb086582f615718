//! The real services: a PostgreSQL database, Kafka topic, S3 bucket or ClickHouse database per
//! test (see the crate documentation).

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use shop_lake::{LakeConfig, S3Config};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};

/// Kafka consumer session timeout for tests: tansu takes about half of it to complete a join.
pub const KAFKA_SESSION_TIMEOUT_MS: u32 = 6_000;

/// True when a missing service must fail the test instead of skipping it.
pub fn services_required() -> bool {
    let set = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v == value);
    set("SHOP_REQUIRE_SERVICES", "1") || set("CI", "true")
}

/// The value of `var`, or `None` (with a message) when it is unset and services are optional.
///
/// # Panics
/// When the variable is unset and [`services_required`].
pub fn service_env(var: &str, service: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if services_required() => panic!(
            "{service} is required but {var} is not set: run `bash scripts/services.sh up` and \
             `source <(bash scripts/services.sh env)`, or run `bash scripts/test.sh`"
        ),
        _ => {
            eprintln!(
                "skipping: {service} is not configured ({var} is unset); start it with scripts/services.sh up"
            );
            None
        }
    }
}

/// A random lower-case suffix for names.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// A PostgreSQL database of its own.
pub struct TestPostgres {
    admin_url: String,
    url: String,
    database: String,
    pool: PgPool,
}

impl TestPostgres {
    /// Creates `shop_test_<random>` on the server at `SHOP_TEST_PG_URL`.
    pub async fn create() -> Option<Self> {
        let admin_url = service_env("SHOP_TEST_PG_URL", "PostgreSQL")?;
        let database = unique("shop_test");
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {admin_url}: {e}"));
        admin
            .execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create database {database}: {e}"));
        admin.close().await.ok();
        let mut url = url::Url::parse(&admin_url).expect("SHOP_TEST_PG_URL is a URL");
        url.set_path(&database);
        let url = url.to_string();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        Some(Self {
            admin_url,
            url,
            database,
            pool,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Drops the database.
    pub async fn cleanup(self) {
        self.pool.close().await;
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .expect("PostgreSQL is still reachable");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database).as_str())
            .await
            .expect("the test database can be dropped");
    }
}

/// A Kafka topic of its own.
pub struct TestTopic {
    brokers: String,
    name: String,
}

impl TestTopic {
    /// Creates `shop_test_<random>` with `partitions` partitions on `SHOP_TEST_KAFKA_BROKERS`.
    pub async fn create(partitions: i32) -> Option<Self> {
        let brokers = service_env("SHOP_TEST_KAFKA_BROKERS", "Kafka")?;
        let name = unique("shop_test");
        let admin = admin_client(&brokers);
        let results = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(15))),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot reach Kafka at {brokers}: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("cannot create topic {topic}: {code}");
            }
        }
        Some(Self { brokers, name })
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Producer settings: idempotent, acks from all replicas.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "15000");
        config
    }

    /// Consumer settings for `group`: manual commits, from the earliest offset, and the short
    /// session timeout tests need with tansu.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", KAFKA_SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", "1000");
        config
    }

    /// Deletes the topic.
    pub async fn cleanup(self) {
        let admin = admin_client(&self.brokers);
        let _ = admin
            .delete_topics(
                &[&self.name],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(15))),
            )
            .await;
    }
}

fn admin_client(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a Kafka admin client can be created")
}

/// An S3 bucket of its own.
pub struct TestBucket {
    name: String,
    s3: S3Config,
    /// The bucket through the lake's own S3 wiring, rooted at the bucket.
    root: shop_lake::Lake,
}

impl TestBucket {
    /// Creates `shop-test-<random>` on the S3 server at `SHOP_TEST_S3_ENDPOINT`.
    pub async fn create() -> Option<Self> {
        let endpoint = service_env("SHOP_TEST_S3_ENDPOINT", "S3")?;
        let access_key_id = service_env("SHOP_TEST_S3_ACCESS_KEY_ID", "S3")?;
        let secret_access_key = service_env("SHOP_TEST_S3_SECRET_ACCESS_KEY", "S3")?;
        let region = std::env::var("SHOP_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into());
        let name = unique("shop-test").replace('_', "-");
        let s3 = S3Config {
            endpoint: Some(endpoint),
            region: Some(region),
            access_key_id: Some(access_key_id),
            secret_access_key: Some(secret_access_key),
            allow_http: true,
        };
        let root = shop_lake::Lake::open(&LakeConfig {
            root: format!("s3://{name}"),
            s3: s3.clone(),
        })
        .expect("an S3 client can be built");
        let bucket = Self { name, s3, root };
        let (rusty, credentials) = bucket.signer();
        let url = rusty_s3::actions::CreateBucket::new(&rusty, &credentials)
            .sign(Duration::from_secs(60));
        let response = reqwest::Client::new()
            .put(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("cannot reach S3 at {:?}: {e}", bucket.s3.endpoint));
        assert!(
            response.status().is_success(),
            "cannot create bucket {}: {}",
            bucket.name,
            response.text().await.unwrap_or_default()
        );
        Some(bucket)
    }

    fn signer(&self) -> (Bucket, Credentials) {
        let s3 = &self.s3;
        let set = |v: &Option<String>| v.clone().expect("set in create()");
        let bucket = Bucket::new(
            set(&s3.endpoint).parse().expect("the S3 endpoint is a URL"),
            UrlStyle::Path,
            self.name.clone(),
            set(&s3.region),
        )
        .expect("a valid bucket name");
        let credentials = Credentials::new(set(&s3.access_key_id), set(&s3.secret_access_key));
        (bucket, credentials)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An object store on the bucket.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        self.root.store()
    }

    /// A lake rooted at `s3://<bucket>/<prefix>` on this server.
    pub fn lake_config(&self, prefix: &str) -> LakeConfig {
        LakeConfig {
            root: format!("s3://{}/{}", self.name, prefix.trim_matches('/')),
            s3: self.s3.clone(),
        }
    }

    /// Deletes every object, then the bucket.
    pub async fn cleanup(self) {
        use futures::TryStreamExt;
        let objects: Vec<_> = self
            .store()
            .list(None)
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .expect("the bucket can be listed");
        for path in objects {
            object_store::ObjectStoreExt::delete(self.store().as_ref(), &path)
                .await
                .expect("an object can be deleted");
        }
        let (rusty, credentials) = self.signer();
        let url = rusty_s3::actions::DeleteBucket::new(&rusty, &credentials)
            .sign(Duration::from_secs(60));
        let _ = reqwest::Client::new().delete(url).send().await;
    }
}

/// A ClickHouse database of its own.
pub struct TestClickHouse {
    client: clickhouse::Client,
    admin: clickhouse::Client,
    database: String,
    url: String,
}

impl TestClickHouse {
    /// Creates `shop_test_<random>` on the server at `SHOP_TEST_CLICKHOUSE_URL`. Validation is
    /// off: ClickHouse 18.16 (Debian) cannot send the schema header the crate validates against.
    pub async fn create() -> Option<Self> {
        let url = service_env("SHOP_TEST_CLICKHOUSE_URL", "ClickHouse")?;
        let user = std::env::var("SHOP_TEST_CLICKHOUSE_USER").unwrap_or_else(|_| "default".into());
        let password = std::env::var("SHOP_TEST_CLICKHOUSE_PASSWORD").unwrap_or_default();
        let admin = clickhouse::Client::default()
            .with_url(&url)
            .with_user(user)
            .with_password(password)
            .with_validation(false);
        let database = unique("shop_test");
        admin
            .query(&format!("CREATE DATABASE {database}"))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("cannot create ClickHouse database at {url}: {e}"));
        Some(Self {
            client: admin.clone().with_database(&database),
            admin,
            database,
            url,
        })
    }

    /// A client whose default database is this test's.
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The HTTP URL of the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database.
    pub async fn cleanup(self) {
        self.admin
            .query(&format!("DROP DATABASE IF EXISTS {}", self.database))
            .execute()
            .await
            .expect("the test database can be dropped");
    }
}
