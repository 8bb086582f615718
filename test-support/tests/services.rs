//! Smoke tests of the real services the test command starts: each talks to the server over its
//! own protocol and checks a round trip, so a broken service or client build fails here first.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shop_test_support::{TestBucket, TestClickHouse, TestPostgres, TestTopic, unique};

#[tokio::test]
async fn postgres_round_trip() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert!(version.starts_with("15"), "PostgreSQL {version}");
    sqlx::query("CREATE TABLE t (id bigint PRIMARY KEY, name text, price numeric(12,2))")
        .execute(pg.pool())
        .await
        .unwrap();
    for (id, name) in [(1_i64, "ä"), (2, "b")] {
        sqlx::query("INSERT INTO t VALUES ($1, $2, 9.99)")
            .bind(id)
            .bind(name)
            .execute(pg.pool())
            .await
            .unwrap();
    }
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM t ORDER BY id")
        .fetch_all(pg.pool())
        .await
        .unwrap();
    assert_eq!(rows, vec![(1, "ä".to_string()), (2, "b".to_string())]);
    pg.cleanup().await;
}

/// Drops a consumer off the async runtime with a deadline: closing a consumer can block (it
/// leaves the group), and once hung against tansu.
async fn close(consumer: StreamConsumer) {
    let closing = tokio::task::spawn_blocking(move || drop(consumer));
    let _ = tokio::time::timeout(Duration::from_secs(15), closing).await;
}

async fn receive(consumer: &StreamConsumer, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a message within 30 s")
            .expect("a message, not an error");
        seen.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        consumer.commit_message(&message, CommitMode::Sync).unwrap();
    }
    seen
}

#[tokio::test]
async fn kafka_group_resumes_at_committed_offsets() {
    let Some(topic) = TestTopic::create(2).await else {
        return;
    };
    let producer: FutureProducer = topic.producer_config().create().unwrap();
    let sent: BTreeSet<String> = (0..20).map(|i| format!("event-{i:02}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(topic.name()).key(&key).payload(payload),
                Duration::from_secs(15),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let group = unique("group");
    let first: StreamConsumer = topic.consumer_config(&group).create().unwrap();
    first.subscribe(&[topic.name()]).unwrap();
    let mut got = receive(&first, 8).await;
    close(first).await;

    // A new member of the same group continues after the committed offsets: nothing twice.
    let second: StreamConsumer = topic.consumer_config(&group).create().unwrap();
    second.subscribe(&[topic.name()]).unwrap();
    got.extend(receive(&second, 12).await);
    close(second).await;
    let unique_got: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        got.len(),
        unique_got.len(),
        "a message was delivered twice: {got:?}"
    );
    assert_eq!(unique_got, sent);
    topic.cleanup().await;
}

#[tokio::test]
async fn s3_object_store_operations() {
    let Some(bucket) = TestBucket::create().await else {
        return;
    };
    let store = bucket.store();
    let path = Path::from("a/b.txt");
    store
        .put(&path, PutPayload::from_static(b"hello"))
        .await
        .unwrap();
    let got = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"hello");
    let ranged = store.get_range(&path, 1..3).await.unwrap();
    assert_eq!(ranged.as_ref(), b"el");

    // Conditional put: creating an existing object is refused.
    let create = PutOptions::from(PutMode::Create);
    let err = store
        .put_opts(&path, PutPayload::from_static(b"again"), create)
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );

    // Multipart upload of two 5 MiB parts.
    let big = Path::from("a/big.bin");
    let upload = store.put_multipart(&big).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 << 20);
    writer.write(&vec![7_u8; 11 << 20]);
    writer.finish().await.unwrap();
    assert_eq!(store.head(&big).await.unwrap().size, 11 << 20);

    let listed: Vec<_> = store
        .list(Some(&Path::from("a")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let delimited = store.list_with_delimiter(None).await.unwrap();
    assert_eq!(delimited.common_prefixes, vec![Path::from("a")]);

    // The lake writes Parquet to S3 through the same path as to a local folder.
    let lake = shop_lake::Lake::open(&bucket.lake_config("lake")).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
    )
    .unwrap();
    let written = shop_lake::writer::write_file(
        &lake,
        Path::from("stage/t/part-0.parquet"),
        schema,
        &[batch],
    )
    .await
    .unwrap();
    assert_eq!(written.rows, 3);
    assert!(
        store
            .head(&Path::from("lake/stage/t/part-0.parquet"))
            .await
            .is_ok()
    );
    bucket.cleanup().await;
}

#[derive(Debug, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct Sale {
    day: u16,
    product_id: u64,
    units: u32,
}

#[tokio::test]
async fn clickhouse_insert_and_select() {
    let Some(ch) = TestClickHouse::create().await else {
        return;
    };
    ch.client()
        .query("CREATE TABLE sales (day Date, product_id UInt64, units UInt32) ENGINE = MergeTree ORDER BY (day, product_id)")
        .execute()
        .await
        .unwrap();
    let mut insert = ch.client().insert::<Sale>("sales").await.unwrap();
    for i in 0..1_000_u64 {
        insert
            .write(&Sale {
                day: 20_000 + (i % 3) as u16,
                product_id: i,
                units: (i % 7) as u32,
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
    let total: u64 = ch
        .client()
        .query("SELECT toUInt64(sum(units)) FROM sales WHERE toUInt16(day) = ?")
        .bind(20_001_u16)
        .fetch_one()
        .await
        .unwrap();
    let expected: u64 = (0..1_000_u64).filter(|i| i % 3 == 1).map(|i| i % 7).sum();
    assert_eq!(total, expected);
    let rows = ch
        .client()
        .query("SELECT day, product_id, units FROM sales ORDER BY product_id LIMIT 2")
        .fetch_all::<Sale>()
        .await
        .unwrap();
    assert_eq!(
        rows[1],
        Sale {
            day: 20_001,
            product_id: 1,
            units: 1
        }
    );
    ch.cleanup().await;
}

/// The whole spine on S3: the demo shop written to a bucket, served by the Flight SQL server,
/// queried by a Flight SQL client; the count equals what the generator wrote.
// Multi-threaded like the binary: delta-rs' kernel waits synchronously for some reads (a
// checkpoint's footer), which on a single-threaded runtime would block the thread that drives
// the S3 client's connections.
#[tokio::test(flavor = "multi_thread")]
async fn flight_sql_serves_a_lake_on_s3() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use shop_demo::{self as demo, DemoSpec};

    let Some(bucket) = TestBucket::create().await else {
        return;
    };
    let lake = shop_lake::Lake::open(&bucket.lake_config("lake")).unwrap();
    let spec = DemoSpec::scaled(0.002).unwrap();
    let summary = demo::generate(&lake, &spec, |_, _| {}).await.unwrap();
    let server = shop_server::start(lake.clone(), shop_server::ServerConfig::on_loopback())
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    for (table, expected) in [
        ("purchases", summary.rows["purchases"]),
        ("customers", summary.rows["customers"]),
    ] {
        let info = client
            .execute(format!("SELECT count(*) FROM shop.stage.{table}"), None)
            .await
            .unwrap();
        let stream = client
            .do_get(info.endpoint[0].ticket.clone().unwrap())
            .await
            .unwrap();
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        let count = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(count as u64, expected, "{table}");
    }
    server.stop().await.unwrap();
    bucket.cleanup().await;
}
