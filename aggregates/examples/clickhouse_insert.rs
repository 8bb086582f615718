//! Benchmark helper (bench/refresh_clickhouse.sh): inserts every row of `stage.purchases` of a
//! lake into the ClickHouse table `<database>.bench_purchases` through the same path the refresh
//! and the stream loader use (Arrow → RowBinary → LZ4 → HTTP), and prints the rate.
//!
//! `cargo run --release -p shop-aggregates --example clickhouse_insert -- LAKE CH_URL DATABASE`

use std::time::Instant;

use shop_aggregates::Refresher;
use shop_aggregates::clickhouse::{ClickHouse, ClickHouseConfig};
use shop_lake::{Lake, LakeConfig};

const DDL: &str = "CREATE TABLE IF NOT EXISTS {database}.bench_purchases
(
    purchase_id  String,
    customer_id  Int64,
    product_id   Int64,
    seller_id    Int64,
    quantity     Int32,
    unit_price   Decimal(12, 2),
    currency     String,
    purchased_at DateTime('UTC'),
    extras       Nullable(String),
    dt           Date
)
ENGINE = MergeTree
ORDER BY purchase_id";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [lake, url, database] = args.as_slice() else {
        return Err("usage: clickhouse_insert LAKE CLICKHOUSE_URL DATABASE".into());
    };
    let lake = Lake::open(&LakeConfig {
        root: lake.clone(),
        ..LakeConfig::default()
    })?;
    let mut config = ClickHouseConfig::new(url.as_str());
    config.database = database.clone();
    let ch = ClickHouse::new(config)?;
    ch.create_tables(&[]).await?;
    ch.execute(&format!("DROP TABLE IF EXISTS {database}.bench_purchases"))
        .await?;
    ch.create_tables(&[DDL]).await?;
    let ctx = Refresher::new(lake, None).context().await?;
    let read = Instant::now();
    let batches = ctx
        .sql("SELECT * FROM shop.stage.purchases")
        .await?
        .collect()
        .await?;
    let read = read.elapsed();
    let started = Instant::now();
    let rows = ch.insert("bench_purchases", &batches).await?;
    let took = started.elapsed();
    println!(
        "rows={rows} read_secs={:.3} insert_secs={:.3} rows_per_sec={:.0}",
        read.as_secs_f64(),
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64()
    );
    Ok(())
}
