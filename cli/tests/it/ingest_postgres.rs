//! `shop-analytics ingest postgres` as a process: killed midway, and facing unreachable services.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array};
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions, LakeConfig, layout, session, snapshot};
use shop_test_support::TestPostgres;

use crate::common::{self, BIN};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("SHOP_LOG", "warn")
        .env("SHOP_S3_SECRET_ACCESS_KEY", "not-used")
        .output()
        .expect("the binary runs")
}

fn run_ok(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn local_lake(root: &str) -> Lake {
    Lake::open(&LakeConfig {
        root: root.to_string(),
        ..Default::default()
    })
    .unwrap()
}

/// `(rows, sum(loyalty_points))` of stage.customers, through the catalog the server uses.
async fn stage_totals(lake: &Lake) -> (i64, i64) {
    let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
    catalog.refresh().await.unwrap();
    let ctx = session::context(session::session_config(), session::runtime(lake), &catalog);
    let batches = ctx
        .sql("SELECT count(*), CAST(sum(loyalty_points) AS BIGINT) FROM stage.customers")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let value = |i: usize| {
        batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    };
    (value(0), value(1))
}

async fn pg_totals(pg: &TestPostgres) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), sum(loyalty_points)::int8 FROM customers")
        .fetch_one(pg.pool())
        .await
        .unwrap()
}

/// The Parquet files in the folder of `stage.customers`, from the lake root.
fn data_files(lake_dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(lake_dir.join("stage/customers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".parquet"))
        .map(|name| format!("stage/customers/{name}"))
        .collect()
}

#[tokio::test]
async fn an_export_killed_midway_leaves_the_previous_snapshot_and_the_next_run_succeeds() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake_path = dir.path().display().to_string();
    run_ok(&[
        "generate",
        "postgres",
        "--pg-url",
        pg.url(),
        "--customers",
        "400000",
        "--sellers",
        "10",
    ]);
    let common = [
        "ingest",
        "postgres",
        "--pg-url",
        pg.url(),
        "--lake",
        &lake_path,
        "--tables",
        "customers",
    ];
    run_ok(&common);
    let lake = local_lake(&lake_path);
    let before = snapshot::read(&lake, layout::STAGE, "customers")
        .await
        .unwrap()
        .unwrap();
    let old_totals = pg_totals(&pg).await;
    assert_eq!(stage_totals(&lake).await, old_totals);

    sqlx::query("UPDATE customers SET loyalty_points = loyalty_points + 1")
        .execute(pg.pool())
        .await
        .unwrap();
    let new_totals = pg_totals(&pg).await;
    assert_ne!(new_totals, old_totals);

    // Kill the export once a quarter of the rows went to the writer (files of 1 MiB, so some
    // files of the new snapshot are complete by then).
    let mut child = Command::new(BIN)
        .args(common)
        .args(["--batch-rows", "2000", "--target-file-mb", "1"])
        .env("SHOP_LOG", "warn,shop_lake=debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = BufReader::new(stderr).lines();
    let mut batches = 0;
    while batches < 50 {
        let line = lines
            .next()
            .expect("the export ended before writing 50 batches")
            .unwrap();
        if line.contains("batch written") {
            batches += 1;
        }
        assert!(
            Instant::now() < deadline,
            "no 50 batches written within 60 s"
        );
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the export finished before it was killed"
    );

    // The kill left complete files of the new snapshot, which no commit names and nothing reads.
    let live: std::collections::BTreeSet<String> =
        before.files.iter().map(|f| f.path.to_string()).collect();
    let orphans = data_files(dir.path()).difference(&live).count();
    assert!(orphans >= 1, "no file of the killed export was complete");
    let after_kill = snapshot::read(&lake, layout::STAGE, "customers")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after_kill.version, before.version);
    assert_eq!(after_kill.files, before.files);
    assert_eq!(stage_totals(&lake).await, old_totals);

    // The next run publishes the new data in full.
    run_ok(&common);
    let after = snapshot::read(&lake, layout::STAGE, "customers")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.version, before.version + 1);
    assert_eq!(stage_totals(&lake).await, new_totals);
    pg.cleanup().await;
}

#[test]
fn unreachable_postgres_or_store_fail_clearly_and_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake_path = dir.path().display().to_string();
    let out = run(&[
        "ingest",
        "postgres",
        "--pg-url",
        "postgres://shop:secret@127.0.0.1:1/shop",
        "--pg-connect-timeout-secs",
        "2",
        "--lake",
        &lake_path,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:1/shop"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let out = run(&[
        "ingest",
        "postgres",
        "--pg-url",
        "postgres://shop@127.0.0.1:1/shop",
        "--lake",
        "s3://bucket/lake",
        "--s3-endpoint",
        "http://127.0.0.1:1",
        "--s3-allow-http",
        "--s3-access-key-id",
        "not-used",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not reachable"), "{stderr}");
}

#[tokio::test]
async fn continuous_mode_exports_round_after_round_and_stops_on_sigterm() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake_path = dir.path().join("lake").display().to_string();
    let health = dir.path().join("healthy");
    run_ok(&[
        "generate",
        "postgres",
        "--pg-url",
        pg.url(),
        "--customers",
        "1000",
        "--sellers",
        "5",
    ]);
    let mut child = Command::new(BIN)
        .args([
            "ingest",
            "postgres",
            "--pg-url",
            pg.url(),
            "--lake",
            &lake_path,
            "--tables",
            "customers",
            "--mode",
            "incremental",
            "--every-secs",
            "1",
            "--health-file",
        ])
        .arg(&health)
        .env("SHOP_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lake = local_lake(&lake_path);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !health.exists() {
        assert!(Instant::now() < deadline, "no successful round within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = stage_totals(&lake).await;
    assert_eq!(first, pg_totals(&pg).await);

    // A change is picked up by a later round without restarting the process.
    sqlx::query(
        "UPDATE customers SET loyalty_points = loyalty_points + 1000 WHERE customer_id <= 3",
    )
    .execute(pg.pool())
    .await
    .unwrap();
    let expected = pg_totals(&pg).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stage_totals(&lake).await != expected {
        assert!(
            Instant::now() < deadline,
            "the change did not arrive within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let version = snapshot::read(&lake, layout::STAGE, "customers")
        .await
        .unwrap()
        .unwrap()
        .version;
    assert!(version >= 2, "{version}");

    let status = common::sigterm_and_wait(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    pg.cleanup().await;
}
