//! Benchmark (docs/BENCHMARKS.md): latency of `shop.v1.ProductService/GetProduct` on a
//! catalogue of PRODUCTS products (default 100,000), against a gRPC health check on the same
//! connection (the RPC floor), measured in the same run. Sequential calls, random ids.
//!
//! `cargo run --release -p shop-api --example product_lookup -- [PRODUCTS] [CALLS]`

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use shop_api::pb::GetProductRequest;
use shop_api::pb::product_service_client::ProductServiceClient;
use shop_demo::DemoSpec;
use shop_server::ServerConfig;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let products = args.first().copied().unwrap_or(100_000);
    let calls = args.get(1).copied().unwrap_or(2_000);
    let mut spec = DemoSpec::scaled(1.0)?;
    spec.products = products;
    spec.days = 1;
    spec.purchases = 1_000;
    let lake = shop_test_support::demo_lake(&spec).await;
    let server = shop_api::start(
        lake.lake.clone(),
        ServerConfig::on_loopback(),
        Default::default(),
    )
    .await?;
    let channel = Channel::from_shared(format!("http://{}", server.addr()))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel.clone());
    let mut client = ProductServiceClient::new(channel);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    // The first lookup builds the id index of the catalogue snapshot: timed on its own.
    let started = Instant::now();
    client
        .get_product(GetProductRequest { product_id: 1 })
        .await?;
    let first = started.elapsed();
    let (mut floor, mut lookups) = (Vec::new(), Vec::new());
    for i in 0..calls + 100 {
        let started = Instant::now();
        health
            .check(HealthCheckRequest {
                service: "shop.v1.ProductService".into(),
            })
            .await?;
        let health_took = started.elapsed();
        let id = rng.random_range(1..=products as i64);
        let started = Instant::now();
        let product = client
            .get_product(GetProductRequest { product_id: id })
            .await?
            .into_inner()
            .product
            .ok_or("no product")?;
        let lookup_took = started.elapsed();
        assert_eq!(product.product_id, id);
        if i >= 100 {
            // The first 100 of each warm up the connection.
            floor.push(health_took);
            lookups.push(lookup_took);
        }
    }
    floor.sort();
    lookups.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("products={products} calls={calls}");
    println!("first GetProduct (builds the index) {:.1} ms", ms(first));
    for (name, values) in [("health check (floor)", &floor), ("GetProduct", &lookups)] {
        println!(
            "{name:22} p50 {:7.3} ms  p90 {:7.3} ms  p99 {:7.3} ms  p50 vs floor {:.1}x",
            ms(percentile(values, 0.5)),
            ms(percentile(values, 0.9)),
            ms(percentile(values, 0.99)),
            ms(percentile(values, 0.5)) / ms(percentile(&floor, 0.5)),
        );
    }
    server.stop().await?;
    Ok(())
}
