//! The shop API on the Flight SQL port, over the network: gRPC health and reflection (what
//! grpcurl and load balancers use), and ProductService behind the server's authentication.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use shop_api::pb::product_service_client::ProductServiceClient;
use shop_api::pb::purchase_service_client::PurchaseServiceClient;
use shop_api::pb::seller_service_client::SellerServiceClient;
use shop_api::pb::{
    CreatePurchaseRequest, CreateSellerRequest, GetProductRequest, UpdateSellerRequest,
};
use shop_demo::DemoSpec;
use shop_server::{AuthConfig, ServerConfig};
use shop_test_support::demo_lake;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_reflection_and_an_authenticated_product_service() {
    let temp = demo_lake(&DemoSpec::scaled(0.01).unwrap()).await;
    let config = ServerConfig {
        auth: AuthConfig {
            users: AuthConfig::parse_users("alice:secret").unwrap(),
            token_ttl: Duration::from_secs(60),
            ..AuthConfig::default()
        },
        ..ServerConfig::on_loopback()
    };
    let server = shop_api::start(temp.lake.clone(), config, Default::default())
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Health answers without credentials, per service.
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "shop.v1.ProductService",
        "arrow.flight.protocol.FlightService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Reflection lists the shop API (what `grpcurl list` shows).
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(Ok(response)) = responses.next().await else {
        panic!("no reflection response");
    };
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"shop.v1.ProductService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    // ProductService needs the same credentials as Flight SQL.
    let mut products = ProductServiceClient::new(channel.clone());
    let err = products
        .get_product(GetProductRequest { product_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(GetProductRequest { product_id: 1 });
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    request
        .metadata_mut()
        .insert("authorization", format!("Basic {basic}").parse().unwrap());
    let product = products
        .get_product(request)
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(product.product_id, 1);

    // alice has no role entry, so she is a reader: every write of the API is refused to her
    // over gRPC before it reaches the service (the REST side is tested in test_hardening.py).
    fn signed<T>(message: T, basic: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Basic {basic}").parse().unwrap());
        request
    }
    let mut purchases = PurchaseServiceClient::new(channel.clone());
    let mut sellers = SellerServiceClient::new(channel.clone());
    let denied = [
        purchases
            .create_purchase(signed(CreatePurchaseRequest::default(), &basic))
            .await
            .map(|_| ())
            .unwrap_err(),
        sellers
            .create_seller(signed(CreateSellerRequest::default(), &basic))
            .await
            .map(|_| ())
            .unwrap_err(),
        sellers
            .update_seller(signed(UpdateSellerRequest::default(), &basic))
            .await
            .map(|_| ())
            .unwrap_err(),
    ];
    for err in denied {
        assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    }
    server.stop().await.unwrap();
}
