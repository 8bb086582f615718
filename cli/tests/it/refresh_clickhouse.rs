//! The analytics layer as processes against the real ClickHouse:
//! - `refresh` equals an independent computation over the stage files (plain Rust over the
//!   Parquet files, no DataFusion), in ClickHouse and in the lake, and re-running days changes
//!   nothing, while a changed stage is picked up without duplicates;
//! - the scheduler of `serve` records a refresh that meets a ClickHouse that is down as failed,
//!   retries it, and succeeds once ClickHouse is back;
//! - `stream clickhouse`, killed again and again, loads every event exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{
    Array, AsArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::Int64Type;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use shop_demo::{self as demo, DemoSpec};
use shop_ingest::kafka::generate::{self, Expected};
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions, LakeConfig, session};
use shop_test_support::{KAFKA_SESSION_TIMEOUT_MS, TestClickHouse, TestTopic};

use crate::common::{self, BIN};

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn demo_lake(root: &Path, last_day: NaiveDate, days: u32, scale: f64) -> (Lake, DemoSpec) {
    std::fs::create_dir_all(root).unwrap();
    let lake = Lake::open(&LakeConfig {
        root: root.to_str().unwrap().to_string(),
        ..LakeConfig::default()
    })
    .unwrap();
    let mut spec = DemoSpec::scaled(scale).unwrap();
    spec.last_day = last_day;
    spec.days = days;
    spec.purchases = spec.purchases * days as usize / 90;
    demo::generate(&lake, &spec, |_, _| {}).await.unwrap();
    (lake, spec)
}

/// One aggregate row, as both sides are compared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, clickhouse::Row, Deserialize)]
struct AggRow {
    dt: String,
    key: String,
    currency: String,
    orders: i64,
    units: i64,
    revenue_cents: i64,
    buyers: i64,
    extra: i64,
}

/// The four aggregates: table, key expression and extra column in ClickHouse.
const TABLES: [(&str, &str, &str); 4] = [
    ("daily_sales", "''", "0"),
    ("daily_product_sales", "toString(product_id)", "0"),
    ("daily_seller_sales", "toString(seller_id)", "products"),
    ("daily_category_sales", "category", "0"),
];

#[derive(Default)]
struct Acc {
    orders: HashSet<String>,
    units: i64,
    revenue_cents: i128,
    buyers: HashSet<i64>,
    products: HashSet<i64>,
}

/// Every aggregate computed from the stage's Parquet files by hand.
async fn independent(lake: &Lake, root: &Path) -> BTreeMap<&'static str, Vec<AggRow>> {
    let mut categories: HashMap<i64, String> = HashMap::new();
    for file in live_files(lake, root, "stage/products").await {
        for b in read_parquet(&file) {
            let ids = b
                .column_by_name("product_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            let cats = b.column_by_name("category").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                categories.insert(ids.value(i), cats.value(i).to_string());
            }
        }
    }
    let mut acc: BTreeMap<(&'static str, String, String, String), Acc> = BTreeMap::new();
    for path in live_files(lake, root, "stage/purchases").await {
        let folder = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let day = folder.strip_prefix("dt=").unwrap().to_string();
        let day = day.as_str();
        {
            for b in read_parquet(&path) {
                let col = |n: &str| b.column_by_name(n).unwrap().clone();
                let ids = col("purchase_id");
                let ids = ids.as_string::<i32>();
                let customers = col("customer_id");
                let customers = customers.as_primitive::<Int64Type>();
                let products = col("product_id");
                let products = products.as_primitive::<Int64Type>();
                let sellers = col("seller_id");
                let sellers = sellers.as_primitive::<Int64Type>();
                let quantity = col("quantity");
                let quantity = quantity.as_any().downcast_ref::<Int32Array>().unwrap();
                let price = col("unit_price");
                let price = price.as_any().downcast_ref::<Decimal128Array>().unwrap();
                assert_eq!(price.scale(), 2);
                let currency = col("currency");
                let currency = currency.as_string::<i32>();
                for i in 0..b.num_rows() {
                    let product = products.value(i);
                    let category = categories
                        .get(&product)
                        .cloned()
                        .unwrap_or_else(|| "unknown".into());
                    for (table, key) in [
                        ("daily_sales", String::new()),
                        ("daily_product_sales", product.to_string()),
                        ("daily_seller_sales", sellers.value(i).to_string()),
                        ("daily_category_sales", category),
                    ] {
                        let a = acc
                            .entry((table, day.to_string(), key, currency.value(i).to_string()))
                            .or_default();
                        a.orders.insert(ids.value(i).to_string());
                        a.units += i64::from(quantity.value(i));
                        a.revenue_cents += i128::from(quantity.value(i)) * price.value(i);
                        a.buyers.insert(customers.value(i));
                        a.products.insert(product);
                    }
                }
            }
        }
    }
    let mut out: BTreeMap<&'static str, Vec<AggRow>> = BTreeMap::new();
    for ((table, dt, key, currency), a) in acc {
        out.entry(table).or_default().push(AggRow {
            dt,
            key,
            currency,
            orders: a.orders.len() as i64,
            units: a.units,
            revenue_cents: i64::try_from(a.revenue_cents).unwrap(),
            buyers: a.buyers.len() as i64,
            extra: if table == "daily_seller_sales" {
                a.products.len() as i64
            } else {
                0
            },
        });
    }
    out
}

async fn fetch(ch: &TestClickHouse, table: &str, key: &str, extra: &str) -> Vec<AggRow> {
    let mut rows: Vec<AggRow> = ch
        .client()
        .query(&format!(
            "SELECT toString(dt) AS dt, {key} AS key, currency, orders, units, \
             toInt64(revenue * 100) AS revenue_cents, buyers, toInt64({extra}) AS extra \
             FROM {}.{table}",
            ch.database()
        ))
        .fetch_all()
        .await
        .unwrap();
    rows.sort();
    rows
}

async fn fetch_all(ch: &TestClickHouse) -> BTreeMap<&'static str, Vec<AggRow>> {
    let mut all = BTreeMap::new();
    for (table, key, extra) in TABLES {
        all.insert(table, fetch(ch, table, key, extra).await);
    }
    all
}

/// The live files of the lake's Delta table in `dir` (such as `analytics/daily_sales`), as
/// local paths, from the table's own log.
async fn live_files(lake: &Lake, root: &Path, dir: &str) -> Vec<PathBuf> {
    let table = lake
        .open_delta(&object_store::path::Path::from(dir))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{dir} is not a Delta table"));
    let mut files: Vec<PathBuf> = table
        .get_file_uris()
        .unwrap()
        .map(|uri| {
            let relative = uri
                .strip_prefix(shop_lake::layout::LAKE_URL)
                .unwrap_or_else(|| panic!("{uri} is not in the lake"));
            root.join(relative)
        })
        .collect();
    files.sort();
    files
}

/// The aggregates of the lake's analytics files, read by hand: the live files that the Delta
/// log names, with the day from their `dt=` partition folder.
async fn lake_aggregates(lake: &Lake, root: &Path) -> BTreeMap<&'static str, Vec<AggRow>> {
    let mut all = BTreeMap::new();
    for (table, _, _) in TABLES {
        let mut rows = Vec::new();
        for file in live_files(lake, root, &format!("analytics/{table}")).await {
            let day = file
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("dt="))
                .unwrap_or_else(|| panic!("{} is not in a dt= folder", file.display()))
                .to_string();
            for b in read_parquet(&file) {
                let i64s = |n: &str| {
                    b.column_by_name(n)
                        .unwrap()
                        .as_primitive::<Int64Type>()
                        .clone()
                };
                let (orders, units, buyers) = (i64s("orders"), i64s("units"), i64s("buyers"));
                let revenue = b.column_by_name("revenue").unwrap();
                let revenue = revenue.as_any().downcast_ref::<Decimal128Array>().unwrap();
                let currency = b.column_by_name("currency").unwrap();
                let currency = currency.as_any().downcast_ref::<StringArray>().unwrap();
                let key = match table {
                    "daily_product_sales" => Some(b.column_by_name("product_id").unwrap().clone()),
                    "daily_seller_sales" => Some(b.column_by_name("seller_id").unwrap().clone()),
                    "daily_category_sales" => Some(b.column_by_name("category").unwrap().clone()),
                    _ => None,
                };
                let extra = (table == "daily_seller_sales").then(|| i64s("products"));
                for i in 0..b.num_rows() {
                    let key = match &key {
                        None => String::new(),
                        Some(k) => match k.as_any().downcast_ref::<Int64Array>() {
                            Some(ints) => ints.value(i).to_string(),
                            None => k.as_string::<i32>().value(i).to_string(),
                        },
                    };
                    rows.push(AggRow {
                        dt: day.clone(),
                        key,
                        currency: currency.value(i).to_string(),
                        orders: orders.value(i),
                        units: units.value(i),
                        revenue_cents: i64::try_from(revenue.value(i)).unwrap(),
                        buyers: buyers.value(i),
                        extra: extra.as_ref().map_or(0, |e| e.value(i)),
                    });
                }
            }
        }
        rows.sort();
        all.insert(table, rows);
    }
    all
}

fn refresh(lake: &Path, ch: &TestClickHouse, args: &[&str]) {
    let output = Command::new(BIN)
        .args(["refresh", "--lake", lake.to_str().unwrap()])
        .args([
            "--clickhouse-url",
            ch.url(),
            "--clickhouse-database",
            ch.database(),
        ])
        .args(args)
        .env("SHOP_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "refresh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Bytes of every analytics file, by path.
async fn count(ch: &TestClickHouse, sql: &str) -> u64 {
    ch.client()
        .query(&sql.replace("{db}", ch.database()))
        .fetch_one::<u64>()
        .await
        .unwrap()
}

async fn run_history(lake: &Lake) -> Vec<(Option<NaiveDate>, String, String, u32, String)> {
    let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
    catalog.refresh().await.unwrap();
    let ctx = session::context(session::session_config(), session::runtime(lake), &catalog);
    shop_aggregates::runs::read(&ctx, "true")
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.day,
                r.trigger.as_str().to_string(),
                r.status.as_str().to_string(),
                r.attempt,
                r.error.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_equals_an_independent_computation_and_reruns_change_nothing() {
    let Some(ch) = TestClickHouse::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let last = NaiveDate::from_ymd_opt(2026, 9, 30).unwrap();
    let (lake, spec) = demo_lake(&root, last, 8, 0.02).await;

    refresh(&root, &ch, &["--all-days"]);
    let expected = independent(&lake, &root).await;
    assert_eq!(expected.len(), 4);
    assert_eq!(expected["daily_sales"].len(), 8, "one currency, eight days");
    let first = fetch_all(&ch).await;
    for (table, rows) in &expected {
        assert_eq!(&first[table], rows, "ClickHouse {table}");
    }
    assert_eq!(
        lake_aggregates(&lake, &root).await,
        expected,
        "lake aggregates"
    );
    assert_eq!(
        count(&ch, "SELECT count() FROM {db}.customers").await,
        spec.customers as u64
    );
    assert_eq!(
        count(&ch, "SELECT count() FROM {db}.products").await,
        spec.products as u64
    );
    assert_eq!(
        count(&ch, "SELECT count() FROM {db}.sellers").await,
        spec.sellers as u64
    );

    // Re-running every day, and one day alone, changes no row: each re-run commits the same
    // rows again in place of the old ones.
    refresh(&root, &ch, &["--all-days"]);
    refresh(
        &root,
        &ch,
        &["--date", "2026-09-27", "--only", "daily_sales,products"],
    );
    assert_eq!(fetch_all(&ch).await, first);
    assert_eq!(
        lake_aggregates(&lake, &root).await,
        expected,
        "lake after re-runs"
    );
    assert_eq!(
        count(&ch, "SELECT count() FROM {db}.products").await,
        spec.products as u64
    );
    let helpers = count(
        &ch,
        "SELECT count() FROM system.tables WHERE database = '{db}' \
         AND (position(name, '__load_') > 0 OR position(name, '__old_') > 0)",
    )
    .await;
    assert_eq!(helpers, 0, "load tables are dropped after each refresh");

    // More purchases land for a day: its refresh replaces the day, the others stay.
    let late_day = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
    let existing = live_files(&lake, &root, "stage/purchases")
        .await
        .into_iter()
        .find(|f| f.parent().unwrap().ends_with("dt=2026-09-28"))
        .unwrap();
    let batches: Vec<RecordBatch> = read_parquet(&existing)
        .into_iter()
        .map(|b| {
            let ids = b.column_by_name("purchase_id").unwrap().as_string::<i32>();
            let renamed: StringArray = ids
                .iter()
                .map(|id| id.map(|id| format!("late-{id}")))
                .collect();
            let mut columns = b.columns().to_vec();
            columns[b.schema().index_of("purchase_id").unwrap()] = std::sync::Arc::new(renamed);
            let b = RecordBatch::try_new(b.schema(), columns).unwrap();
            shop_types::purchases::with_day(&b, late_day)
        })
        .collect();
    lake.write_delta(
        &shop_lake::layout::table_dir("stage", "purchases"),
        &["dt"],
        batches,
        shop_lake::delta::Mode::Append,
        shop_lake::delta::CommitInfo::default(),
    )
    .await
    .unwrap();
    refresh(&root, &ch, &["--date", "2026-09-28"]);
    let changed = independent(&lake, &root).await;
    assert_ne!(changed, expected);
    let day = |rows: &[AggRow], keep: bool| -> Vec<AggRow> {
        rows.iter()
            .filter(|r| (r.dt == "2026-09-28") == keep)
            .cloned()
            .collect()
    };
    let now = fetch_all(&ch).await;
    for (table, rows) in &changed {
        assert_eq!(
            &now[table], rows,
            "ClickHouse {table} after the late purchases"
        );
        assert_eq!(day(&now[table], false), day(&first[table], false));
    }
    let sales = &now["daily_sales"];
    let before = &first["daily_sales"];
    let orders = |rows: &[AggRow]| day(rows, true)[0].orders;
    assert_eq!(orders(sales), 2 * orders(before), "the day doubled, once");

    // The scheduler's catch-up would count these days as done (with ClickHouse); a run that
    // wrote the lake only does not count for ClickHouse.
    let done = |clickhouse: bool| {
        let lake = lake.clone();
        async move {
            let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
            catalog.refresh().await.unwrap();
            let ctx =
                session::context(session::session_config(), session::runtime(&lake), &catalog);
            let filter = shop_aggregates::schedule::done_filter(
                NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
                &shop_aggregates::Selection::all().aggregate_names(),
                clickhouse,
            );
            shop_aggregates::runs::read(&ctx, &filter)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|r| r.day)
                .collect::<BTreeSet<NaiveDate>>()
        }
    };
    assert_eq!(done(true).await.len(), 8);
    let lake_only = Command::new(BIN)
        .args([
            "refresh",
            "--lake",
            root.to_str().unwrap(),
            "--date",
            "2026-09-01",
        ])
        .env("SHOP_LOG", "warn")
        .output()
        .unwrap();
    assert!(lake_only.status.success());
    assert!(
        !done(true)
            .await
            .contains(&NaiveDate::from_ymd_opt(2026, 9, 1).unwrap())
    );
    assert!(
        done(false)
            .await
            .contains(&NaiveDate::from_ymd_opt(2026, 9, 1).unwrap())
    );

    // Every run is in the history, and succeeded.
    let history = run_history(&lake).await;
    let statuses: BTreeSet<&str> = history.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(statuses, BTreeSet::from(["succeeded"]));
    // 8 days twice + 1 day + 1 day, and the dimensions after each of the four refreshes (the
    // --only run copied one), and the lake-only day.
    assert_eq!(history.len(), 8 + 8 + 1 + 1 + 4 + 1);
    ch.cleanup().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forwards every connection on `listener` to `target` (ClickHouse "coming back").
async fn forward(listener: tokio::net::TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_records_a_clickhouse_outage_retries_and_succeeds_when_it_is_back() {
    let Some(ch) = TestClickHouse::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let yesterday = chrono::Utc::now().date_naive().pred_opt().unwrap();
    let (lake, _) = demo_lake(&root, yesterday, 2, 0.01).await;
    let port = free_port();
    let mut serve = common::KillOnDrop(
        Command::new(BIN)
            .args([
                "serve",
                "--lake",
                root.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "off",
            ])
            .args(["--clickhouse-url", &format!("http://127.0.0.1:{port}")])
            .args(["--clickhouse-database", ch.database()])
            .args(["--refresh-catch-up-days", "2", "--refresh-retry-secs", "1"])
            .args([
                "--refresh-retry-max-secs",
                "2",
                "--refresh-max-attempts",
                "1000",
            ])
            .env("SHOP_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let days = [yesterday.pred_opt().unwrap(), yesterday];

    // ClickHouse is down: both days are recorded failed (and retried).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let history = run_history(&lake).await;
        let failed: BTreeSet<NaiveDate> = history
            .iter()
            .filter(|r| r.2 == "failed" && r.4.contains(&format!("127.0.0.1:{port}")))
            .filter_map(|r| r.0)
            .collect();
        let retried = history
            .iter()
            .any(|r| r.2 == "failed" && r.1 == "retry" && r.3 >= 2);
        if failed.len() == 2 && retried {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed runs recorded: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(serve.try_wait().unwrap().is_none(), "serve keeps running");

    // ClickHouse comes back on the same address: the retries succeed.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let target = ch
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let proxy = tokio::spawn(forward(listener, target));
    let deadline = Instant::now() + Duration::from_secs(60);
    let history = loop {
        let history = run_history(&lake).await;
        let succeeded: BTreeSet<NaiveDate> = history
            .iter()
            .filter(|r| r.2 == "succeeded")
            .filter_map(|r| r.0)
            .collect();
        let dimensions = history.iter().any(|r| r.0.is_none() && r.2 == "succeeded");
        if succeeded.len() == 2 && dimensions {
            break history;
        }
        assert!(
            Instant::now() < deadline,
            "the retries did not succeed: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for day in days {
        let runs: Vec<_> = history.iter().filter(|r| r.0 == Some(day)).collect();
        assert_eq!(runs[0].1, "catch_up", "{runs:?}");
        assert_eq!(runs[0].2, "failed", "{runs:?}");
        let last = runs.last().unwrap();
        assert_eq!(
            (last.1.as_str(), last.2.as_str()),
            ("retry", "succeeded"),
            "{runs:?}"
        );
        assert!(
            runs.iter().rev().skip(1).all(|r| r.2 == "failed"),
            "{runs:?}"
        );
    }
    let expected = independent(&lake, &root).await;
    for (table, rows) in &expected {
        let (_, key, extra) = TABLES.iter().find(|t| t.0 == *table).unwrap();
        assert_eq!(
            &fetch(&ch, table, key, extra).await,
            rows,
            "ClickHouse {table}"
        );
    }
    let status = common::sigterm_and_wait(&mut serve, Duration::from_secs(30));
    assert!(status.success(), "serve exited with {status}");
    proxy.abort();
    ch.cleanup().await;
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Loaded {
    rows: u64,
    messages: u64,
}

struct StreamSetup {
    topic: TestTopic,
    ch: TestClickHouse,
    valid: HashSet<String>,
    duplicates: u64,
    poison: u64,
}

impl StreamSetup {
    fn spawn(&self, group: &str) -> common::KillOnDrop {
        common::KillOnDrop(
            Command::new(BIN)
                .args([
                    "stream",
                    "clickhouse",
                    "--kafka-brokers",
                    self.topic.brokers(),
                ])
                .args(["--topic", self.topic.name(), "--group", group])
                .args(["--clickhouse-url", self.ch.url()])
                .args(["--clickhouse-database", self.ch.database()])
                .args(["--flush-rows", "2000", "--flush-interval-ms", "300"])
                .args([
                    "--session-timeout-ms",
                    &KAFKA_SESSION_TIMEOUT_MS.to_string(),
                ])
                .env(
                    "SHOP_LOG",
                    std::env::var("SHOP_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    }

    async fn loaded(&self, table: &str) -> Loaded {
        match self
            .ch
            .client()
            .query(&format!(
                "SELECT count() AS rows, uniqExact(kafka_partition, kafka_offset) AS messages \
                 FROM {}.{table}",
                self.ch.database()
            ))
            .fetch_one::<Loaded>()
            .await
        {
            Ok(loaded) => loaded,
            Err(e) => panic!("cannot count the loaded messages: {e}"),
        }
    }

    /// Distinct messages in ClickHouse, both tables.
    async fn messages(&self) -> u64 {
        self.loaded("purchases").await.messages + self.loaded("purchases_rejected").await.messages
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_stream_loader_loads_every_event_exactly_once() {
    const EVENTS: u64 = 60_000;
    let (Some(topic), Some(ch)) = (TestTopic::create(4).await, TestClickHouse::create().await)
    else {
        return;
    };
    let events: Vec<_> = generate::events(5, EVENTS, 0.01, chrono::Utc::now()).collect();
    let (mut valid, mut duplicates, mut poison) = (HashSet::new(), 0, 0);
    for e in &events {
        match &e.expected {
            Expected::Valid { purchase_id } => assert!(valid.insert(purchase_id.clone())),
            Expected::Poison { kind: "duplicate" } => duplicates += 1,
            Expected::Poison { .. } => poison += 1,
        }
    }
    assert!(duplicates > 0 && poison > 0);
    generate::produce(topic.brokers(), topic.name(), events.into_iter(), |_| {})
        .await
        .unwrap();
    // Background merges of the ReplacingMergeTree fold a resent purchase into one row, which
    // would also hide a message loaded twice: with merges stopped, every loaded row stays
    // visible until the checks below.
    for ddl in shop_aggregates::stream::DDL {
        ch.client()
            .query(&ddl.replace("{database}", ch.database()))
            .execute()
            .await
            .unwrap();
    }
    for table in ["purchases", "purchases_rejected"] {
        ch.client()
            .query(&format!("SYSTEM STOP MERGES {}.{table}", ch.database()))
            .execute()
            .await
            .unwrap();
    }
    let setup = StreamSetup {
        topic,
        ch,
        valid,
        duplicates,
        poison,
    };
    let group = format!("{}-clickhouse", setup.topic.name());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut targets: Vec<u64> = (0..4).map(|_| rng.random_range(3_000..40_000)).collect();
    targets.sort_unstable();
    let progress = common::kill_at_targets(
        &targets,
        || setup.spawn(&group),
        async || setup.messages().await,
        "loader",
    )
    .await;
    eprintln!("killed at {targets:?}; loaded after each kill: {progress:?}");
    assert!(
        progress.iter().all(|p| *p < EVENTS),
        "a kill came after the end: {progress:?}"
    );
    let mut child = setup.spawn(&group);
    let deadline = Instant::now() + Duration::from_secs(180);
    while setup.messages().await < EVENTS {
        assert!(
            Instant::now() < deadline,
            "not everything loaded within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = common::sigterm_and_wait(&mut child, Duration::from_secs(30));
    assert!(status.success(), "the loader exited with {status}");

    // No message loaded twice, nothing missing, nothing extra.
    let purchases = setup.loaded("purchases").await;
    assert_eq!(
        purchases.rows, purchases.messages,
        "a message was loaded twice"
    );
    assert_eq!(purchases.rows, setup.valid.len() as u64 + setup.duplicates);
    let ids: Vec<String> = setup
        .ch
        .client()
        .query(&format!(
            "SELECT DISTINCT purchase_id FROM {}.purchases",
            setup.ch.database()
        ))
        .fetch_all()
        .await
        .unwrap();
    let ids: HashSet<String> = ids.into_iter().collect();
    assert_eq!(ids.len(), setup.valid.len());
    assert!(
        ids == setup.valid,
        "the purchase ids differ from the generated ones"
    );
    // The producer's resends fold into one row per purchase.
    let final_rows = count(&setup.ch, "SELECT count() FROM {db}.purchases FINAL").await;
    assert_eq!(final_rows, setup.valid.len() as u64);
    let rejected = setup.loaded("purchases_rejected").await;
    assert_eq!(rejected.messages, setup.poison);
    // Once merged, one row per purchase remains.
    for sql in [
        "SYSTEM START MERGES {db}.purchases",
        "OPTIMIZE TABLE {db}.purchases FINAL",
    ] {
        setup
            .ch
            .client()
            .query(&sql.replace("{db}", setup.ch.database()))
            .execute()
            .await
            .unwrap();
    }
    let merged = count(&setup.ch, "SELECT count() FROM {db}.purchases").await;
    assert_eq!(merged, setup.valid.len() as u64);
    let unexplained = count(
        &setup.ch,
        "SELECT count() FROM {db}.purchases_rejected WHERE reason = ''",
    )
    .await;
    assert_eq!(unexplained, 0);
    setup.topic.cleanup().await;
    setup.ch.cleanup().await;
}
