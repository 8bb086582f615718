//! The shop API against the real PostgreSQL and Kafka of `scripts/services.sh`: purchases are
//! published once per idempotency key, invalid requests publish and write nothing, a Kafka
//! outage is UNAVAILABLE and a retry recovers, sellers round-trip through PostgreSQL, and the
//! REST gateway answers the same calls with the same rules.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_api::Backends as ApiBackends;
use shop_api::pb::purchase_service_client::PurchaseServiceClient;
use shop_api::pb::seller_service_client::SellerServiceClient;
use shop_api::pb::{
    CreatePurchaseRequest, CreateSellerRequest, GetSellerRequest, ListSellersRequest,
    UpdateSellerRequest,
};
use shop_api::{KafkaPublisher, PurchaseConfig};
use shop_demo::DemoSpec;
use shop_lake::Lake;
use shop_server::{AuthConfig, RunningServer, ServerConfig};
use shop_test_support::{TempLake, demo_lake};
use shop_test_support::{TestPostgres, TestTopic};
use tonic::Code;
use tonic::transport::Channel;

/// A demo lake (products 1..=50), a database with customers 1 (active), 2 (inactive) and 3
/// (active), a topic, and a server with its REST gateway.
struct Shop {
    pg: TestPostgres,
    topic: TestTopic,
    lake: Lake,
    server: RunningServer,
    _lake: TempLake,
}

async fn small_demo_lake() -> TempLake {
    let mut spec = DemoSpec::scaled(0.01).unwrap();
    spec.days = 2;
    spec.purchases = 20;
    demo_lake(&spec).await
}

fn config(auth: AuthConfig) -> ServerConfig {
    ServerConfig {
        auth,
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerConfig::on_loopback()
    }
}

fn publisher(brokers: &str, topic: &str, timeout: Duration) -> KafkaPublisher {
    KafkaPublisher::new(
        brokers,
        &PurchaseConfig {
            topic: topic.to_string(),
            publish_timeout: timeout,
        },
    )
    .unwrap()
}

impl Shop {
    async fn start() -> Option<Self> {
        let pg = TestPostgres::create().await?;
        let topic = TestTopic::create(1).await?;
        shop_ingest::postgres::migrate(pg.pool()).await.unwrap();
        sqlx::query(
            "INSERT INTO customers (customer_id, name, country, is_active) VALUES \
             (1, 'Ada', 'DE', true), (2, 'Bo', 'SE', false), (3, 'Cy', 'FR', true)",
        )
        .execute(pg.pool())
        .await
        .unwrap();
        let temp = small_demo_lake().await;
        let lake = temp.lake.clone();
        let backends = ApiBackends {
            postgres: Some(pg.pool().clone()),
            kafka: Some(publisher(
                topic.brokers(),
                topic.name(),
                Duration::from_secs(10),
            )),
        };
        let server = shop_api::start(lake.clone(), config(AuthConfig::default()), backends)
            .await
            .unwrap();
        Some(Self {
            pg,
            topic,
            lake,
            server,
            _lake: temp,
        })
    }

    /// A second server on the same lake and database whose Kafka is a port nobody listens on.
    async fn start_with_kafka_down(&self, publish_timeout: Duration) -> RunningServer {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let backends = ApiBackends {
            postgres: Some(self.pg.pool().clone()),
            kafka: Some(publisher(
                &dead.to_string(),
                self.topic.name(),
                publish_timeout,
            )),
        };
        shop_api::start(self.lake.clone(), config(AuthConfig::default()), backends)
            .await
            .unwrap()
    }

    async fn channel(&self) -> Channel {
        connect(self.server.addr()).await
    }

    fn rest(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.http_addr().unwrap())
    }

    /// The events on the topic, as (key, payload).
    fn events(&self) -> Vec<(String, Vec<u8>)> {
        read_topic(self.topic.brokers(), self.topic.name())
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
        self.topic.cleanup().await;
        self.pg.cleanup().await;
    }
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Every message of partition 0, read from the start up to the high watermark.
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "shop-services-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < high {
        assert!(
            Instant::now() < deadline,
            "read {} of {high} messages",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            out.push((
                String::from_utf8(message.key().unwrap_or_default().to_vec()).unwrap(),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

fn purchase(customer_id: i64, product_id: i64, key: &str) -> CreatePurchaseRequest {
    CreatePurchaseRequest {
        customer_id,
        product_id,
        quantity: 2,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn requests_recorded(pg: &TestPostgres) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(published_at) FROM purchase_requests")
        .fetch_one(pg.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn purchases_are_published_once_per_idempotency_key() {
    let Some(shop) = Shop::start().await else {
        return;
    };
    let mut client = PurchaseServiceClient::new(shop.channel().await);

    let first = client
        .create_purchase(CreatePurchaseRequest {
            unit_price: "12.5".into(),
            currency: "USD".into(),
            extras: Some(
                serde_json::from_value(serde_json::json!({"coupon": "XMAS", "n": 2})).unwrap(),
            ),
            ..purchase(1, 7, "order-1")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.replayed);
    let created = first.purchase.unwrap();
    assert_eq!(
        (created.customer_id, created.product_id, created.quantity),
        (1, 7, 2)
    );
    assert_eq!(
        (created.unit_price.as_str(), created.currency.as_str()),
        ("12.50", "USD")
    );

    // The retry returns the same purchase and publishes nothing.
    let retry = client
        .create_purchase(CreatePurchaseRequest {
            unit_price: "12.50".into(),
            currency: "USD".into(),
            extras: Some(
                serde_json::from_value(serde_json::json!({"n": 2, "coupon": "XMAS"})).unwrap(),
            ),
            ..purchase(1, 7, "order-1")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retry.replayed);
    assert_eq!(retry.purchase.unwrap(), created);

    // The same key for another purchase is refused.
    let err = client
        .create_purchase(purchase(1, 8, "order-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(
        err.message().contains("idempotency_key"),
        "{}",
        err.message()
    );

    // Eight concurrent requests with one new key: one publishes, seven are replays.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        calls.push(tokio::spawn(async move {
            client
                .create_purchase(purchase(3, 9, "order-2"))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut replays = 0;
    let mut ids = HashSet::new();
    for call in calls {
        let answer = call.await.unwrap();
        replays += usize::from(answer.replayed);
        ids.insert(answer.purchase.unwrap().purchase_id);
    }
    assert_eq!((replays, ids.len()), (7, 1));
    let concurrent_id = ids.into_iter().next().unwrap();

    // Without a key every request is a new purchase; the catalogue price is the default.
    let a = client
        .create_purchase(purchase(3, 9, ""))
        .await
        .unwrap()
        .into_inner();
    let b = client
        .create_purchase(purchase(3, 9, ""))
        .await
        .unwrap()
        .into_inner();
    let (a, b) = (a.purchase.unwrap(), b.purchase.unwrap());
    assert_ne!(a.purchase_id, b.purchase_id);
    assert_eq!(a.unit_price, b.unit_price);

    // On the topic: each purchase once, keyed by its id, valid for the ingest's decoder.
    let events = shop.events();
    let keys: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            created.purchase_id.as_str(),
            concurrent_id.as_str(),
            a.purchase_id.as_str(),
            b.purchase_id.as_str()
        ]
    );
    for (key, payload) in &events {
        let decoded = shop_types::purchases::decode(payload, None).unwrap();
        assert_eq!(&decoded.purchase_id, key);
    }
    let first_event = shop_types::purchases::decode(&events[0].1, None).unwrap();
    assert_eq!(first_event.unit_price, 1250);
    assert_eq!(
        first_event.extras.as_deref(),
        Some(r#"{"coupon":"XMAS","n":2.0}"#)
    );
    // The seller is the product's, from the catalogue.
    let catalogue = shop_api::ProductApi::new(&shop.lake, &{
        let c = shop_lake::LakeCatalog::new(shop.lake.clone(), Default::default());
        c.refresh().await.unwrap();
        c
    });
    let product = catalogue.lookup(7).await.unwrap().unwrap();
    assert_eq!(first_event.seller_id, product.seller_id);
    assert_eq!(requests_recorded(&shop.pg).await, (2, 2));
    shop.stop().await;
}

#[tokio::test]
async fn invalid_purchases_publish_and_record_nothing() {
    let Some(shop) = Shop::start().await else {
        return;
    };
    let mut client = PurchaseServiceClient::new(shop.channel().await);
    let future = pbjson_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 3600,
        nanos: 0,
    };
    let cases: Vec<(Code, &str, CreatePurchaseRequest)> = vec![
        (Code::InvalidArgument, "customer_id", purchase(0, 7, "k")),
        (Code::InvalidArgument, "product_id", purchase(1, -1, "k")),
        (
            Code::InvalidArgument,
            "quantity",
            CreatePurchaseRequest {
                quantity: 0,
                ..purchase(1, 7, "k")
            },
        ),
        (
            Code::InvalidArgument,
            "unit_price",
            CreatePurchaseRequest {
                unit_price: "-3".into(),
                ..purchase(1, 7, "k")
            },
        ),
        (
            Code::InvalidArgument,
            "currency",
            CreatePurchaseRequest {
                currency: "Euro".into(),
                ..purchase(1, 7, "k")
            },
        ),
        (
            Code::InvalidArgument,
            "purchased_at",
            CreatePurchaseRequest {
                purchased_at: Some(future),
                ..purchase(1, 7, "k")
            },
        ),
        (
            Code::InvalidArgument,
            "idempotency_key",
            purchase(1, 7, "line\nbreak"),
        ),
        (
            Code::NotFound,
            "product_id 999999",
            purchase(1, 999_999, "k"),
        ),
        (Code::NotFound, "customer_id 42", purchase(42, 7, "k")),
        (
            Code::FailedPrecondition,
            "customer_id 2",
            purchase(2, 7, "k"),
        ),
    ];
    for (code, field, request) in cases {
        let err = client.create_purchase(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{field}: {}", err.message());
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    assert!(shop.events().is_empty(), "an invalid request published");
    assert_eq!(requests_recorded(&shop.pg).await, (0, 0));
    shop.stop().await;
}

#[tokio::test]
async fn kafka_down_is_unavailable_and_the_retry_publishes() {
    let Some(shop) = Shop::start().await else {
        return;
    };
    let down = shop.start_with_kafka_down(Duration::from_secs(2)).await;
    let mut client = PurchaseServiceClient::new(connect(down.addr()).await);
    let started = Instant::now();
    let err = client
        .create_purchase(purchase(1, 5, "during-outage"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("Retry"), "{}", err.message());
    // Bounded: the 2 s publish timeout plus the safety margin, not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        requests_recorded(&shop.pg).await,
        (1, 0),
        "recorded, not published"
    );
    down.stop().await.unwrap();

    // Kafka is back (the healthy server): the retry publishes the recorded event once.
    let mut client = PurchaseServiceClient::new(shop.channel().await);
    let answer = client
        .create_purchase(purchase(1, 5, "during-outage"))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.replayed, "the first attempt never reached Kafka");
    let again = client
        .create_purchase(purchase(1, 5, "during-outage"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    let events = shop.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, answer.purchase.unwrap().purchase_id);
    assert_eq!(requests_recorded(&shop.pg).await, (1, 1));
    shop.stop().await;
}

#[tokio::test]
async fn sellers_live_in_postgres() {
    let Some(shop) = Shop::start().await else {
        return;
    };
    let mut client = SellerServiceClient::new(shop.channel().await);
    let mut created = Vec::new();
    for (name, country) in [
        ("Books & Co", "DE"),
        ("Vinyl", "FR"),
        ("Tea", "DE"),
        ("Maps", "DE"),
    ] {
        let seller = client
            .create_seller(CreateSellerRequest {
                name: name.into(),
                email: format!("{}@example.com", name.len()),
                country: country.into(),
                rating: "4.5".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .seller
            .unwrap();
        assert_eq!(seller.commission_rate, "0.1000", "the default");
        assert_eq!(seller.rating, "4.50");
        created.push(seller);
    }
    let got = client
        .get_seller(GetSellerRequest {
            seller_id: created[0].seller_id,
        })
        .await
        .unwrap()
        .into_inner()
        .seller
        .unwrap();
    assert_eq!(got, created[0]);

    // Paging through the German sellers, two at a time, visits each once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_sellers(ListSellersRequest {
                country: "DE".into(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.sellers.iter().map(|s| s.name.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["Books & Co", "Tea", "Maps"]);
    let german_token = token_of(&mut client, "DE").await;
    let err = client
        .list_sellers(ListSellersRequest {
            country: "FR".into(),
            page_size: 2,
            page_token: german_token,
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("page_token"), "{}", err.message());

    // Updates change what is set; an empty email clears it; the rest stays.
    let updated = client
        .update_seller(UpdateSellerRequest {
            seller_id: created[1].seller_id,
            city: Some("Lyon".into()),
            email: Some(String::new()),
            is_verified: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .seller
        .unwrap();
    assert_eq!(
        (
            updated.city.as_str(),
            updated.email.as_str(),
            updated.is_verified
        ),
        ("Lyon", "", true)
    );
    assert_eq!(
        (updated.name.as_str(), updated.rating.as_str()),
        ("Vinyl", "4.50")
    );
    let (email, city): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT email::text, city FROM sellers WHERE seller_id = $1")
            .bind(created[1].seller_id)
            .fetch_one(shop.pg.pool())
            .await
            .unwrap();
    assert_eq!((email, city.as_deref()), (None, Some("Lyon")));

    // Unknown ids and invalid fields.
    let err = client
        .get_seller(GetSellerRequest { seller_id: 99_999 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .update_seller(UpdateSellerRequest {
            seller_id: 99_999,
            name: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let bad_creates = [
        (
            "name",
            CreateSellerRequest {
                country: "DE".into(),
                ..Default::default()
            },
        ),
        (
            "country",
            CreateSellerRequest {
                name: "n".into(),
                country: "Germany".into(),
                ..Default::default()
            },
        ),
        (
            "email",
            CreateSellerRequest {
                name: "n".into(),
                country: "DE".into(),
                email: "nope".into(),
                ..Default::default()
            },
        ),
        (
            "rating",
            CreateSellerRequest {
                name: "n".into(),
                country: "DE".into(),
                rating: "6".into(),
                ..Default::default()
            },
        ),
        (
            "commission_rate",
            CreateSellerRequest {
                name: "n".into(),
                country: "DE".into(),
                commission_rate: "0.12345".into(),
                ..Default::default()
            },
        ),
    ];
    for (field, request) in bad_creates {
        let err = client.create_seller(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    let err = client
        .update_seller(UpdateSellerRequest {
            seller_id: created[0].seller_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("at least one"), "{}", err.message());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sellers")
        .fetch_one(shop.pg.pool())
        .await
        .unwrap();
    assert_eq!(count, 4, "no invalid seller was written");
    shop.stop().await;
}

async fn token_of(client: &mut SellerServiceClient<Channel>, country: &str) -> String {
    client
        .list_sellers(ListSellersRequest {
            country: country.into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token
}

#[tokio::test]
async fn the_rest_gateway_answers_the_same_calls() {
    let Some(shop) = Shop::start().await else {
        return;
    };
    let http = reqwest::Client::new();

    // A decimal is a JSON string, as in the proto3 JSON mapping; a number is refused by name.
    let response = http
        .post(shop.rest("/v1/sellers"))
        .json(&serde_json::json!({"name": "Rest Shop", "country": "NL", "commission_rate": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    eprintln!("{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("commission_rate"),
        "{body}"
    );

    // A seller: 201, the proto3 JSON mapping (snake_case, int64 as a string, every field).
    let response = http
        .post(shop.rest("/v1/sellers"))
        .json(&serde_json::json!({"name": "Rest Shop", "country": "NL", "commission_rate": "0.2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    let seller = &body["seller"];
    let id = seller["seller_id"].as_str().expect("int64 as a string");
    assert_eq!(seller["commission_rate"], "0.2000");
    assert_eq!(seller["is_verified"], false);
    assert_eq!(seller["email"], "");
    let got: serde_json::Value = http
        .get(shop.rest(&format!("/v1/sellers/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&got["seller"], seller);
    let patched: serde_json::Value = http
        .patch(shop.rest(&format!("/v1/sellers/{id}")))
        .json(&serde_json::json!({"city": "Utrecht"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["seller"]["city"], "Utrecht");

    // Products, filtered by query parameters.
    let response = http
        .get(shop.rest("/v1/products?page_size=3&min_price=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(page["products"].as_array().unwrap().len(), 3);
    assert!(!page["next_page_token"].as_str().unwrap().is_empty());

    // A purchase with the Idempotency-Key header: 201, then 200 replayed.
    let body = serde_json::json!({"customer_id": 1, "product_id": "4", "quantity": 1});
    let mut answers = Vec::new();
    for expected in [201, 200] {
        let response = http
            .post(shop.rest("/v1/purchases"))
            .header("Idempotency-Key", "rest-order-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
        answers.push(response.json::<serde_json::Value>().await.unwrap());
    }
    assert_eq!(answers[0]["replayed"], false);
    assert_eq!(answers[1]["replayed"], true);
    assert_eq!(answers[0]["purchase"], answers[1]["purchase"]);
    assert_eq!(shop.events().len(), 1);

    // Errors: status, gRPC code and the field named.
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (http.get(shop.rest("/v1/products/abc")), 400, "INVALID_ARGUMENT", "product_id"),
        (http.get(shop.rest("/v1/products/999999")), 404, "NOT_FOUND", "product_id"),
        (http.get(shop.rest("/v1/products?page_size=lots")), 400, "INVALID_ARGUMENT", "page_size"),
        (http.get(shop.rest("/v1/products?colour=red")), 400, "INVALID_ARGUMENT", "colour"),
        (http.get(shop.rest("/v1/products?page_size=1&page_size=2")), 400, "INVALID_ARGUMENT", "page_size"),
        (http.get(shop.rest("/v1/purchases/not-a-uuid")), 400, "INVALID_ARGUMENT", "purchase_id"),
        (http.get(shop.rest("/v1/purchases?customer_id=1&from_time=yesterday")), 400, "INVALID_ARGUMENT", "from_time"),
        (http.post(shop.rest("/v1/purchases")).json(&serde_json::json!({"customer_id": 1, "product_id": 4, "quantity": "two"})), 400, "INVALID_ARGUMENT", "quantity"),
        (http.post(shop.rest("/v1/purchases")).json(&serde_json::json!({"customer_id": 1, "product_id": 4, "quantity": 1, "discount": 5})), 400, "INVALID_ARGUMENT", "discount"),
        (http.post(shop.rest("/v1/purchases")).header("content-type", "application/json").body("{not json"), 400, "INVALID_ARGUMENT", "JSON"),
        (http.post(shop.rest("/v1/purchases")).header("content-type", "text/plain").body("{}"), 415, "INVALID_ARGUMENT", "JSON"),
        (http.post(shop.rest("/v1/purchases")).header("Idempotency-Key", "rest-order-1").json(&serde_json::json!({"customer_id": 1, "product_id": 4, "quantity": 3})), 409, "ALREADY_EXISTS", "idempotency_key"),
        (http.patch(shop.rest(&format!("/v1/sellers/{id}"))).json(&serde_json::json!({"seller_id": 999, "city": "x"})), 400, "INVALID_ARGUMENT", "seller_id"),
        (http.delete(shop.rest(&format!("/v1/sellers/{id}"))), 405, "UNIMPLEMENTED", "method"),
        (http.get(shop.rest("/v2/nothing")), 404, "NOT_FOUND", "route"),
    ];
    for (request, status, code, named) in cases {
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(named),
            "{named}: {body}"
        );
    }
    assert_eq!(shop.events().len(), 1, "no invalid request published");

    // The OpenAPI description and the health check.
    let doc: serde_json::Value = http
        .get(shop.rest("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for route in shop_api::openapi::ROUTES {
        assert!(
            doc["paths"][route.path][route.method].is_object(),
            "{}",
            route.path
        );
    }
    // axum's own rejections come in the same JSON form.
    let huge = http
        .post(shop.rest("/v1/sellers"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let body: serde_json::Value = huge.json().await.unwrap();
    assert_eq!(body["code"], "RESOURCE_EXHAUSTED", "{body}");
    let health = http.get(shop.rest("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    shop.stop().await;
}

#[tokio::test]
async fn the_rest_gateway_checks_credentials() {
    let temp = small_demo_lake().await;
    let lake = temp.lake.clone();
    let auth = AuthConfig {
        users: AuthConfig::parse_users("alice:secret").unwrap(),
        // Creating a seller needs the writer role; readers get 403 (see the hardening tests).
        roles: AuthConfig::parse_roles("alice=writer").unwrap(),
        token_ttl: Duration::from_secs(60),
    };
    let server = shop_api::start(lake, config(auth), ApiBackends::default())
        .await
        .unwrap();
    let url = format!("http://{}/v1/products/1", server.http_addr().unwrap());
    let http = reqwest::Client::new();
    let denied = http.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert!(denied.headers().contains_key("www-authenticate"));
    let wrong = http
        .get(&url)
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http
        .get(&url)
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Credentials are checked before the request is read: a bad path is still a 401.
    let bad_path = http
        .get(format!(
            "http://{}/v1/purchases/%FF",
            server.http_addr().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_path.status(), 401);
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    let ok = http
        .get(format!("http://{}/healthz", server.http_addr().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "health is open");
    // Without PostgreSQL and Kafka, creating is a precondition failure, not a crash.
    let err = http
        .post(format!("http://{}/v1/sellers", server.http_addr().unwrap()))
        .header("authorization", format!("Basic {basic}"))
        .json(&serde_json::json!({"name": "n", "country": "DE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(err.status(), 412);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn keys_are_per_customer_and_extras_survive_the_record() {
    let Some(shop) = Shop::start().await else {
        return;
    };
    let mut client = PurchaseServiceClient::new(shop.channel().await);
    // A whole number beyond 2^53 in extras: recorded as text, a retry still matches.
    let extras: pbjson_types::Struct =
        serde_json::from_value(serde_json::json!({"order_ref": 1.234_567_890_123_456_8e16_f64}))
            .unwrap();
    let request = |customer| CreatePurchaseRequest {
        extras: Some(extras.clone()),
        ..purchase(customer, 6, "shared-key")
    };
    let one = client
        .create_purchase(request(1))
        .await
        .unwrap()
        .into_inner();
    let three = client
        .create_purchase(request(3))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !one.replayed && !three.replayed,
        "two customers, two purchases"
    );
    let (one, three) = (one.purchase.unwrap(), three.purchase.unwrap());
    assert_ne!(one.purchase_id, three.purchase_id);
    let again = client
        .create_purchase(request(1))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.purchase.unwrap(), one);
    assert_eq!(shop.events().len(), 2);
    shop.stop().await;
}

/// A record that was never marked published and is older than the ingest's window of repeated
/// ids: the retry finds the purchase in the lake and publishes nothing (a second copy would
/// land as a second row).
#[tokio::test]
async fn a_late_retry_finds_its_purchase_in_the_lake() {
    let Some(shop) = Shop::start().await else {
        return;
    };
    let down = shop.start_with_kafka_down(Duration::from_millis(500)).await;
    let mut client = PurchaseServiceClient::new(connect(down.addr()).await);
    let err = client
        .create_purchase(purchase(3, 11, "late"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    down.stop().await.unwrap();

    // As if the unacknowledged send had reached Kafka and the ingest had landed it, 20
    // minutes ago.
    let event: String = sqlx::query_scalar(
        "UPDATE purchase_requests SET created_at = now() - interval '20 minutes' \
         WHERE customer_id = 3 AND idempotency_key = 'late' RETURNING event",
    )
    .fetch_one(shop.pg.pool())
    .await
    .unwrap();
    let landed = shop_types::purchases::decode(event.as_bytes(), None).unwrap();
    let mut batch = shop_types::purchases::PurchaseBatch::default();
    batch.push(&landed);
    shop_test_support::lake::land_purchases(&shop.lake, landed.day(), &batch.finish()).await;
    // The server's catalog sees the commit within its refresh interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = client_get(&shop, &landed.purchase_id).await;
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the landed purchase never became visible"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut client = PurchaseServiceClient::new(shop.channel().await);
    let answer = client
        .create_purchase(purchase(3, 11, "late"))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.replayed, "the purchase was there already");
    assert_eq!(answer.purchase.unwrap().purchase_id, landed.purchase_id);
    assert!(shop.events().is_empty(), "nothing published a second time");
    assert_eq!(requests_recorded(&shop.pg).await, (1, 1));
    shop.stop().await;
}

async fn client_get(shop: &Shop, purchase_id: &str) -> bool {
    let mut client = PurchaseServiceClient::new(shop.channel().await);
    client
        .get_purchase(shop_api::pb::GetPurchaseRequest {
            purchase_id: purchase_id.to_string(),
        })
        .await
        .is_ok()
}
