//! `shop-analytics ingest kafka` as a process against the real broker and S3 server: killed with
//! SIGKILL again and again, and sharing a group with a second worker that stops mid-stream.
//! Afterwards the lake must hold every valid purchase exactly once and every invalid event
//! exactly once in the dead letters, as the generator intended them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int32Array, Int64Array, StringArray};
use rand::{Rng, SeedableRng};
use shop_ingest::kafka::generate::{self, Expected};
use shop_ingest::kafka::next_offset;
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions, LakeConfig, session};
use shop_test_support::{KAFKA_SESSION_TIMEOUT_MS, TestBucket, TestTopic};

use crate::common::{self, BIN};
const PARTITIONS: i32 = 4;

struct Setup {
    topic: TestTopic,
    group: String,
    bucket: TestBucket,
    lake_config: LakeConfig,
    lake: Lake,
    valid: HashSet<String>,
    poison: usize,
}

async fn setup(events: u64) -> Option<Setup> {
    let topic = TestTopic::create(PARTITIONS).await?;
    let bucket = TestBucket::create().await?;
    let lake_config = bucket.lake_config("lake");
    let lake = Lake::open(&lake_config).unwrap();
    let events: Vec<_> = generate::events(11, events, 0.01, chrono::Utc::now()).collect();
    let mut valid = HashSet::new();
    let mut poison = 0;
    for e in &events {
        match &e.expected {
            Expected::Valid { purchase_id } => assert!(valid.insert(purchase_id.clone())),
            Expected::Poison { .. } => poison += 1,
        }
    }
    generate::produce(topic.brokers(), topic.name(), events.into_iter(), |_| {})
        .await
        .unwrap();
    Some(Setup {
        group: format!("{}-group", topic.name()),
        topic,
        bucket,
        lake_config,
        lake,
        valid,
        poison,
    })
}

impl Setup {
    fn spawn_worker(&self, group: &str) -> Child {
        let s3 = &self.lake_config.s3;
        Command::new(BIN)
            .args([
                "ingest",
                "kafka",
                "--kafka-brokers",
                self.topic.brokers(),
                "--topic",
                self.topic.name(),
                "--group",
                group,
                "--flush-rows",
                "5000",
                "--flush-interval-ms",
                "500",
                "--session-timeout-ms",
                &KAFKA_SESSION_TIMEOUT_MS.to_string(),
                "--lake",
                &self.lake_config.root,
                "--s3-endpoint",
                s3.endpoint.as_deref().unwrap(),
                "--s3-access-key-id",
                s3.access_key_id.as_deref().unwrap(),
                "--s3-allow-http",
            ])
            .env(
                "SHOP_S3_SECRET_ACCESS_KEY",
                s3.secret_access_key.as_deref().unwrap(),
            )
            .env(
                "SHOP_S3_REGION",
                s3.region.as_deref().unwrap_or("us-east-1"),
            )
            .env(
                "SHOP_LOG",
                std::env::var("SHOP_TEST_WORKER_LOG")
                    .unwrap_or_else(|_| "warn,deltalake_core::writer::stats=error".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the worker starts")
    }

    /// Messages committed to the lake (their partitions' transaction versions in
    /// `stage.purchases`), summed over the partitions.
    async fn written(&self) -> i64 {
        let mut total = 0;
        for p in 0..PARTITIONS {
            let next = next_offset(&self.lake, &self.group, self.topic.name(), p);
            total += next.await.unwrap().unwrap_or(0);
        }
        total
    }

    async fn wait_until_written(&self, total: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let written = self.written().await;
            if written >= total {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {written} of {total} messages written within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Checks the lake against the generator, through the catalog the server uses.
    async fn check_exactly_once(&self) {
        let catalog = LakeCatalog::new(self.lake.clone(), LakeCatalogOptions::default());
        catalog.refresh().await.unwrap();
        let ctx = session::context(
            session::session_config(),
            session::runtime(&self.lake),
            &catalog,
        );
        let batches = ctx
            .sql("SELECT purchase_id FROM stage.purchases")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for b in &batches {
            let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            for id in ids.iter().flatten() {
                *counts.entry(id.to_string()).or_default() += 1;
            }
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "purchases written more than once: {twice:?}"
        );
        let got: HashSet<String> = counts.into_keys().collect();
        let missing: Vec<_> = self.valid.difference(&got).take(5).collect();
        let extra: Vec<_> = got.difference(&self.valid).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:?}, unexpected {extra:?}"
        );
        assert_eq!(got.len(), self.valid.len());

        let batches = ctx
            .sql("SELECT \"partition\", \"offset\", reason FROM stage.purchases_rejected")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut rejected = BTreeMap::new();
        for b in &batches {
            let partitions = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
            let offsets = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            let reasons = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                assert!(!reasons.value(i).is_empty());
                let previous = rejected.insert((partitions.value(i), offsets.value(i)), ());
                assert!(
                    previous.is_none(),
                    "dead letter at {}/{} twice",
                    partitions.value(i),
                    offsets.value(i)
                );
            }
        }
        assert_eq!(rejected.len(), self.poison, "dead letters");
    }
}

/// A graceful stop: the worker flushes and commits.
fn stop(mut child: Child) {
    common::sigterm_and_wait(&mut child, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_workers_neither_lose_nor_duplicate_events() {
    const EVENTS: u64 = 200_000;
    let Some(setup) = setup(EVENTS).await else {
        return;
    };
    let group = setup.group.clone();
    // Kill points: random amounts of written messages, so every kill lands mid-stream, between
    // or inside flushes (the lake's progress is polled every 20 ms while the worker writes).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mut targets: Vec<u64> = (0..6)
        // A worker writes up to ~25k messages between a target and its kill (four partitions
        // of 5000-row flushes); targets up to 110k keep six kills well before the end.
        .map(|_| rng.random_range(5_000..110_000))
        .collect();
    targets.sort_unstable();
    let progress = common::kill_at_targets(
        &targets,
        || common::KillOnDrop(setup.spawn_worker(&group)),
        async || setup.written().await as u64,
        "worker",
    )
    .await;
    eprintln!("killed at {targets:?}; written after each kill: {progress:?}");
    assert!(
        progress.iter().all(|w| *w < EVENTS),
        "a kill came after the end: {progress:?}"
    );
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    let child = setup.spawn_worker(&group);
    setup
        .wait_until_written(EVENTS as i64, Duration::from_secs(300))
        .await;
    stop(child);
    setup.check_exactly_once().await;
    setup.topic.cleanup().await;
    setup.bucket.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_leaving_the_group_mid_stream_loses_and_duplicates_nothing() {
    const EVENTS: u64 = 60_000;
    let Some(setup) = setup(EVENTS).await else {
        return;
    };
    let group = setup.group.clone();
    let first = setup.spawn_worker(&group);
    let second = setup.spawn_worker(&group);
    // Both members hold partitions once some, but not all, data is written.
    let deadline = Instant::now() + Duration::from_secs(60);
    while setup.written().await < 5_000 {
        assert!(Instant::now() < deadline, "nothing written within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_stop = setup.written().await;
    assert!(
        at_stop < EVENTS as i64,
        "everything was written before the stop"
    );
    stop(first);
    setup
        .wait_until_written(EVENTS as i64, Duration::from_secs(180))
        .await;
    stop(second);
    eprintln!("first worker stopped with {at_stop} of {EVENTS} written");
    setup.check_exactly_once().await;
    setup.topic.cleanup().await;
    setup.bucket.cleanup().await;
}
