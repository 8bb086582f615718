//! The shop API as an extension of the Flight SQL server: its gRPC services on the Flight port
//! and REST/JSON on the HTTP port, over the server's catalog, limits and credentials.

use std::sync::Arc;

use shop_lake::Lake;
use shop_server::{Extensions, RunningServer, Server, ServerConfig, StartError};
use sqlx::PgPool;
use tonic::service::RoutesBuilder;

use crate::pb::product_service_server::ProductServiceServer;
use crate::pb::purchase_service_server::PurchaseServiceServer;
use crate::pb::seller_service_server::SellerServiceServer;
use crate::{KafkaPublisher, ProductApi, PurchaseApi, SellerApi};

/// The shop API's backends besides the lake. Calls that need a missing one answer
/// `FAILED_PRECONDITION`.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    /// Sellers, customers (checked by CreatePurchase) and idempotency keys.
    pub postgres: Option<PgPool>,
    /// Where CreatePurchase publishes.
    pub kafka: Option<KafkaPublisher>,
}

/// The gRPC methods that change data: they need the writer role. Every other method needs the
/// reader role ([`READ_METHODS`]); a test checks that every method of `proto/shop/v1` is in
/// exactly one of the two lists, so a new RPC cannot be left to the reader default unseen.
pub const WRITE_METHODS: [&str; 3] = [
    "/shop.v1.PurchaseService/CreatePurchase",
    "/shop.v1.SellerService/CreateSeller",
    "/shop.v1.SellerService/UpdateSeller",
];

/// The gRPC methods that only read.
pub const READ_METHODS: [&str; 6] = [
    "/shop.v1.ProductService/GetProduct",
    "/shop.v1.ProductService/ListProducts",
    "/shop.v1.PurchaseService/GetPurchase",
    "/shop.v1.PurchaseService/ListPurchases",
    "/shop.v1.SellerService/GetSeller",
    "/shop.v1.SellerService/ListSellers",
];

/// The shop API over `server`'s catalog, within the limits of one Flight SQL query, behind its
/// credentials: gRPC on the Flight port, REST/JSON (with `/openapi.json`) on the HTTP port.
pub fn extensions(lake: &Lake, server: &Server, backends: Backends) -> Extensions {
    let catalog = server.catalog();
    let limits = server.limits().clone();
    let products = ProductApi::with_limits(lake, catalog, limits.clone());
    let purchases = PurchaseApi::new(
        lake,
        catalog,
        products.clone(),
        backends.postgres.clone(),
        backends.kafka,
        limits,
    );
    let sellers = SellerApi::new(backends.postgres);
    let gateway = crate::rest::Gateway {
        products: products.clone(),
        purchases: purchases.clone(),
        sellers: sellers.clone(),
        auth: Arc::clone(server.auth()),
        openapi: Arc::new(crate::openapi::document()),
    };
    let mut grpc = RoutesBuilder::default();
    grpc.add_service(ProductServiceServer::new(products))
        .add_service(PurchaseServiceServer::new(purchases))
        .add_service(SellerServiceServer::new(sellers));
    Extensions {
        grpc,
        grpc_names: crate::SERVICE_NAMES.to_vec(),
        descriptor_sets: vec![crate::pb::FILE_DESCRIPTOR_SET],
        write_methods: WRITE_METHODS.to_vec(),
        http: Some(crate::rest::router(gateway)),
    }
}

/// Starts the Flight SQL server over `lake` with the shop API beside it.
pub async fn start(
    lake: Lake,
    config: ServerConfig,
    backends: Backends,
) -> Result<RunningServer, StartError> {
    let server = Server::open(lake.clone(), config).await?;
    let api = extensions(&lake, &server, backends);
    server.serve(api).await
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// Every method of the services is classified as a read or a write, once.
    #[test]
    fn every_method_is_classified() {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| {
                file.service.iter().flat_map(move |service| {
                    service.method.iter().map(move |method| {
                        format!("/{}.{}/{}", file.package(), service.name(), method.name())
                    })
                })
            })
            .collect();
        methods.sort();
        let mut classified: Vec<String> = WRITE_METHODS
            .iter()
            .chain(READ_METHODS.iter())
            .map(|m| m.to_string())
            .collect();
        classified.sort();
        assert_eq!(methods, classified);
        for name in crate::SERVICE_NAMES {
            assert!(methods.iter().any(|m| m.starts_with(&format!("/{name}/"))));
        }
    }
}
