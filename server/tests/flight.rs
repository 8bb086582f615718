//! Flight SQL end to end: an in-process server on port 0 over a demo lake, driven by
//! arrow-flight's Flight SQL client. Expected values are computed from the generated batches
//! directly, not through DataFusion.

use shop_lake::delta::{CommitInfo, Mode};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, AsArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, SqlInfo};
use arrow_flight::{FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use shop_demo::{self as demo, DemoSpec};
use shop_lake::Lake;
use shop_server::{AuthConfig, RunningServer, ServerConfig};
use shop_test_support::{TempLake, demo_lake};
use tonic::Code;
use tonic::transport::Channel;

struct Fixture {
    _lake: TempLake,
    lake: Lake,
    spec: DemoSpec,
    /// Kept alive for the test; its tasks end with the test's runtime.
    _server: RunningServer,
    client: FlightSqlServiceClient<Channel>,
}

async fn fixture(configure: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let spec = DemoSpec::scaled(0.01).unwrap();
    let temp = demo_lake(&spec).await;
    let lake = temp.lake.clone();
    let mut config = ServerConfig::on_loopback();
    config.catalog.refresh_interval = Duration::from_millis(100);
    configure(&mut config);
    let server = shop_server::start(lake.clone(), config).await.unwrap();
    let channel = Channel::from_shared(format!("http://{}", server.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Fixture {
        _lake: temp,
        lake,
        spec,
        _server: server,
        client: FlightSqlServiceClient::new(channel),
    }
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    assert!(
        !info.endpoint.is_empty(),
        "a FlightInfo needs at least one endpoint"
    );
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    fetch(client, info).await
}

/// Starts `sql` and opens its result stream without reading it: the query keeps its slot until
/// the stream is dropped.
async fn hold(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> arrow_flight::decode::FlightRecordBatchStream {
    let info = client.execute(sql.to_string(), None).await.unwrap();
    client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap()
}

async fn error_code(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> (Code, String) {
    let err = match client.execute(sql.to_string(), None).await {
        Err(e) => e,
        Ok(info) => {
            let ticket = info.endpoint[0].ticket.clone().unwrap();
            match client.do_get(ticket).await {
                Err(e) => e,
                Ok(stream) => stream
                    .try_collect::<Vec<_>>()
                    .await
                    .expect_err(&format!("{sql:?} should fail")),
            }
        }
    };
    let status = match err {
        arrow_flight::error::FlightError::Tonic(status) => *status,
        other => panic!("{sql:?}: expected a gRPC status, got {other}"),
    };
    (status.code(), status.message().to_string())
}

/// Purchases of the whole demo, computed from the generator's batches.
fn expected_purchases(spec: &DemoSpec) -> Vec<RecordBatch> {
    let (_, sellers, prices) = demo::products(spec).unwrap();
    let mut day = spec.first_day();
    let mut out = Vec::new();
    while day <= spec.last_day {
        out.push(demo::purchases_of_day(spec, day, &sellers, &prices).unwrap());
        day += chrono::Duration::days(1);
    }
    out
}

fn single_i64(batches: &[RecordBatch]) -> i64 {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 1, "{batches:?}");
    let batch = batches.iter().find(|b| b.num_rows() == 1).unwrap();
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn queries_match_an_independent_computation() {
    let mut f = fixture(|_| {}).await;
    let expected = expected_purchases(&f.spec);
    let rows: i64 = expected.iter().map(|b| b.num_rows() as i64).sum();
    let cents: i128 = expected
        .iter()
        .flat_map(|b| {
            let q = b
                .column(4)
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap()
                .clone();
            let p = b
                .column(5)
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .unwrap()
                .clone();
            (0..b.num_rows()).map(move |i| i128::from(q.value(i)) * p.value(i))
        })
        .sum();

    assert_eq!(
        single_i64(&query(&mut f.client, "SELECT count(*) FROM purchases").await),
        rows
    );
    let batches = query(
        &mut f.client,
        "SELECT sum(quantity * unit_price) AS revenue FROM shop.stage.purchases",
    )
    .await;
    let revenue = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    assert_eq!(revenue.value(0), cents);

    // The aggregate table does not exist until quickstart builds it; the stage tables do.
    let tables = query(&mut f.client, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'stage' ORDER BY table_name").await;
    let names: Vec<&str> = tables[0]
        .column(0)
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(names, ["customers", "products", "purchases", "sellers"]);

    // Strings are plain Utf8 on the wire, in FlightInfo, GetSchema and DoGet alike.
    let sql = "SELECT name, email FROM customers ORDER BY customer_id LIMIT 3";
    let info = f.client.execute(sql.into(), None).await.unwrap();
    let info_schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(info_schema.field(0).data_type(), &DataType::Utf8);
    let streamed = fetch(&mut f.client, info).await;
    assert_eq!(streamed[0].schema().as_ref(), &info_schema);
    let names = streamed[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let batch = demo::customers(&f.spec).unwrap();
    let generated = batch
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(names.value(0), generated.value(0));
    let cmd = arrow_flight::sql::CommandStatementQuery {
        query: sql.into(),
        transaction_id: None,
    };
    let descriptor =
        FlightDescriptor::new_cmd(arrow_flight::sql::ProstMessageExt::as_any(&cmd).encode_to_vec());
    let schema_result = f
        .client
        .inner_mut()
        .get_schema(descriptor)
        .await
        .unwrap()
        .into_inner();
    let schema = Schema::try_from(&schema_result).unwrap();
    assert_eq!(schema, info_schema);
}

use prost::Message;

#[tokio::test]
async fn prepared_statements_bind_positional_parameters() {
    let mut f = fixture(|_| {}).await;
    let expected = expected_purchases(&f.spec);
    let customer = 3_i64;
    let mut want = 0;
    for b in &expected {
        let c = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let q = b.column(4).as_any().downcast_ref::<Int32Array>().unwrap();
        want += (0..b.num_rows())
            .filter(|&i| c.value(i) == customer && q.value(i) >= 2)
            .count() as i64;
    }
    for sql in [
        "SELECT count(*) FROM purchases WHERE customer_id = $1 AND quantity >= $2",
        "SELECT count(*) FROM purchases WHERE customer_id = ? AND quantity >= ?",
    ] {
        let mut stmt = f.client.prepare(sql.into(), None).await.unwrap();
        let params = stmt.parameter_schema().unwrap().clone();
        assert_eq!(params.fields().len(), 2, "{sql}");
        assert_eq!(params.field(0).name(), "$1");
        // Int64 for an Int32 column is accepted: values are cast to the inferred type.
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("a", DataType::Int64, false),
                Field::new("b", DataType::Int64, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![customer])),
                Arc::new(Int64Array::from(vec![2])),
            ],
        )
        .unwrap();
        stmt.set_parameters(batch).unwrap();
        let info = stmt.execute().await.unwrap();
        assert_eq!(single_i64(&fetch(&mut f.client, info).await), want, "{sql}");
        stmt.close().await.unwrap();
    }

    // Ten and more placeholders are advertised in numeric order, not string order.
    let sql = format!(
        "SELECT {} AS s",
        (1..=11)
            .map(|i| format!("CAST(${i} AS BIGINT)"))
            .collect::<Vec<_>>()
            .join(" + ")
    );
    let mut stmt = f.client.prepare(sql, None).await.unwrap();
    let names: Vec<String> = stmt
        .parameter_schema()
        .unwrap()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, (1..=11).map(|i| format!("${i}")).collect::<Vec<_>>());
    let fields: Vec<Field> = (1..=11)
        .map(|i| Field::new(format!("p{i}"), DataType::Int64, false))
        .collect();
    let columns = (1..=11)
        .map(|i| Arc::new(Int64Array::from(vec![i, 100 * i])) as _)
        .collect();
    stmt.set_parameters(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap())
        .unwrap();
    let info = stmt.execute().await.unwrap();
    let batches = fetch(&mut f.client, info).await;
    // A two-row parameter batch runs the query once per row.
    let sums: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(sums, vec![66, 6600]);

    // A query with parameters but no bound values is a clear error.
    let mut stmt = f.client.prepare("SELECT $1".into(), None).await.unwrap();
    let info = stmt.execute().await.unwrap();
    let err = f
        .client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no values were bound"), "{err}");
}

#[tokio::test]
async fn metadata_has_the_spec_schemas() {
    let mut f = fixture(|_| {}).await;
    let info = f.client.get_catalogs().await.unwrap();
    let batches = fetch(&mut f.client, info).await;
    assert_eq!(batches[0].column(0).as_string::<i32>().value(0), "shop");

    let info = f
        .client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let batches = fetch(&mut f.client, info).await;
    let schemas: Vec<&str> = batches[0]
        .column(1)
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(schemas, ["analytics", "stage", "system"]);

    let info = f
        .client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("stage".into()),
            table_name_filter_pattern: Some("pur%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let batches = fetch(&mut f.client, info).await;
    assert_eq!(batches[0].num_rows(), 1);
    assert_eq!(
        batches[0].column(2).as_string::<i32>().value(0),
        "purchases"
    );
    assert_eq!(batches[0].column(3).as_string::<i32>().value(0), "TABLE");
    let ipc = batches[0].column(4).as_binary::<i32>().value(0);
    let schema =
        Schema::try_from(arrow_flight::IpcMessage(bytes::Bytes::copy_from_slice(ipc))).unwrap();
    let price = schema.field_with_name("unit_price").unwrap();
    assert_eq!(price.data_type(), &DataType::Decimal128(12, 2));
    assert_eq!(price.metadata()["ARROW:FLIGHT:SQL:TYPE_NAME"], "DECIMAL");
    assert_eq!(
        schema.field_with_name("dt").unwrap().data_type(),
        &DataType::Date32
    );

    let info = f.client.get_sql_info(vec![]).await.unwrap();
    let batches = fetch(&mut f.client, info).await;
    let keys: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert!(keys >= 80, "{keys} SqlInfo keys");
    let info = f
        .client
        .get_sql_info(vec![SqlInfo::FlightSqlServerReadOnly])
        .await
        .unwrap();
    assert_eq!(fetch(&mut f.client, info).await[0].num_rows(), 1);

    let info = f
        .client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "purchases".into(),
        })
        .await
        .unwrap();
    let batches = fetch(&mut f.client, info).await;
    assert_eq!(
        batches[0].column(3).as_string::<i32>().value(0),
        "purchase_id"
    );

    let info = f.client.get_table_types().await.unwrap();
    assert!(fetch(&mut f.client, info).await[0].num_rows() >= 1);
    let info = f
        .client
        .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    assert!(fetch(&mut f.client, info).await[0].num_rows() >= 10);
}

#[tokio::test]
async fn forbidden_and_invalid_statements_get_clear_codes() {
    let mut f = fixture(|_| {}).await;
    for sql in [
        "INSERT INTO purchases SELECT * FROM purchases",
        "DELETE FROM customers",
        "CREATE TABLE t AS SELECT 1",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'",
        "COPY (SELECT 1) TO '/tmp/shop-copy-test.csv'",
        "DROP TABLE purchases",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM '/etc/passwd'",
        "EXPLAIN ANALYZE INSERT INTO purchases SELECT * FROM purchases",
    ] {
        let (code, message) = error_code(&mut f.client, sql).await;
        assert_eq!(code, Code::PermissionDenied, "{sql}: {message}");
        assert!(message.contains("not allowed"), "{sql}: {message}");
    }
    assert!(!std::path::Path::new("/tmp/shop-copy-test.csv").exists());
    let (code, message) = error_code(&mut f.client, "SELEC 1").await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    let (code, message) = error_code(&mut f.client, "SELECT * FROM no_such_table").await;
    assert_eq!(code, Code::NotFound, "{message}");
    let (code, message) = error_code(&mut f.client, "SELECT no_such_column FROM purchases").await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(
        !message.contains("DataFusionError"),
        "no Debug dumps: {message}"
    );

    // Hundreds of bad requests later the server still answers.
    for i in 0..300 {
        let sql = match i % 3 {
            0 => "DROP TABLE purchases",
            1 => "SELECT FROM WHERE",
            _ => "SELECT * FROM nope",
        };
        let _ = f.client.execute(sql.into(), None).await;
    }
    assert!(single_i64(&query(&mut f.client, "SELECT count(*) FROM customers").await) > 0);
}

#[tokio::test]
async fn new_tables_and_files_are_visible_without_a_restart() {
    let mut f = fixture(|_| {}).await;
    let before = single_i64(&query(&mut f.client, "SELECT count(*) FROM purchases").await);
    // A new day of purchases lands while the server runs.
    let (_, sellers, prices) = demo::products(&f.spec).unwrap();
    let extra = demo::purchases_of_day(&f.spec, f.spec.first_day(), &sellers, &prices).unwrap();
    let late = chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    f.lake
        .write_delta(
            &object_store::path::Path::from("stage/purchases"),
            &["dt"],
            vec![shop_types::purchases::with_day(&extra, late)],
            Mode::Append,
            CommitInfo::default(),
        )
        .await
        .unwrap();
    let after = single_i64(&query(&mut f.client, "SELECT count(*) FROM purchases").await);
    assert_eq!(after, before + extra.num_rows() as i64);

    // A brand-new table is queryable at once and listed by GetTables within the refresh interval.
    f.lake
        .write_delta(
            &object_store::path::Path::from("stage/returns"),
            &[],
            vec![extra.clone()],
            Mode::Append,
            CommitInfo::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        single_i64(&query(&mut f.client, "SELECT count(*) FROM stage.returns").await),
        extra.num_rows() as i64
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = f
            .client
            .get_tables(CommandGetTables {
                catalog: Some("shop".into()),
                db_schema_filter_pattern: None,
                table_name_filter_pattern: Some("returns".into()),
                table_types: vec![],
                include_schema: false,
            })
            .await
            .unwrap();
        if fetch(&mut f.client, info)
            .await
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>()
            == 1
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "returns never listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A new snapshot of customers replaces the old one as a whole.
    let one = demo::customers(&f.spec).unwrap().slice(0, 7);
    let writer = shop_lake::snapshot::SnapshotWriter::begin(
        &f.lake,
        "stage",
        "customers",
        one.schema(),
        None,
        Default::default(),
    )
    .await
    .unwrap();
    writer.write(one).await.unwrap();
    writer.commit().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while single_i64(&query(&mut f.client, "SELECT count(*) FROM customers").await) != 7 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new snapshot never visible"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn authentication_is_required_when_users_are_configured() {
    let mut f = fixture(|c| {
        c.auth = AuthConfig {
            users: AuthConfig::parse_users("alice:secret").unwrap(),
            token_ttl: Duration::from_secs(60),
            ..AuthConfig::default()
        };
    })
    .await;
    let (code, message) = error_code(&mut f.client, "SELECT 1").await;
    assert_eq!(code, Code::Unauthenticated, "{message}");
    assert!(f.client.handshake("alice", "wrong").await.is_err());
    f.client.handshake("alice", "secret").await.unwrap();
    assert!(f.client.token().is_some());
    assert!(single_i64(&query(&mut f.client, "SELECT count(*) FROM sellers").await) > 0);
}

#[tokio::test]
async fn limits_stop_queries_with_clear_codes() {
    // Result size.
    let mut f = fixture(|c| c.limits.max_result_rows = Some(10)).await;
    let (code, message) = error_code(&mut f.client, "SELECT * FROM purchases").await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(message.contains("10 rows"), "{message}");
    assert_eq!(
        query(&mut f.client, "SELECT * FROM purchases LIMIT 5")
            .await
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        5
    );

    // Time.
    let mut f = fixture(|c| c.limits.query_timeout = Duration::from_millis(200)).await;
    let (code, message) = error_code(
        &mut f.client,
        "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b",
    )
    .await;
    assert_eq!(code, Code::DeadlineExceeded, "{message}");

    // Keep-alive: a query that produces nothing for a while still sends (empty) batches, then
    // ends with the deadline.
    let mut f = fixture(|c| {
        c.limits.query_timeout = Duration::from_secs(2);
        c.limits.idle_keepalive = Duration::from_millis(100);
    })
    .await;
    let info = f
        .client
        .execute(
            // Not count(*): a cross join without columns counts 1e10 rows in about 2 s.
            "SELECT sum(a.value + b.value) FROM generate_series(1, 100000) a, \
             generate_series(1, 100000) b"
                .into(),
            None,
        )
        .await
        .unwrap();
    let mut stream = f
        .client
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
        .unwrap();
    let mut empty_batches = 0;
    let end = loop {
        match stream.try_next().await {
            Ok(Some(batch)) => {
                assert_eq!(batch.num_rows(), 0, "the cross join cannot finish in 2 s");
                empty_batches += 1;
            }
            Ok(None) => panic!("the stream ended without the deadline error"),
            Err(e) => break e,
        }
    };
    // At least one: on 2 cores the CPU-bound join (and the other tests of this binary running
    // in parallel) can hold the runtime's threads long enough to delay the 100 ms timer; a full
    // test run once saw only 2 of the ~19 possible.
    assert!(
        empty_batches >= 1,
        "{empty_batches} keep-alive batches in 2 s"
    );
    assert!(end.to_string().contains("time limit"), "{end}");

    // Memory: a query that must hold all its rows cannot fit in 1 MiB.
    let mut f = fixture(|c| c.limits.memory_per_query = 1 << 20).await;
    let (code, message) = error_code(
        &mut f.client,
        "SELECT array_agg(repeat(purchase_id, 20)) FROM purchases",
    )
    .await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");

    // Concurrency without a queue: with one slot, a second query is refused while the first
    // streams, and the slot is free again once the first stream is dropped.
    let mut f = fixture(|c| {
        c.limits.max_concurrent_queries = 1;
        c.limits.max_queued_queries = 0;
    })
    .await;
    let held = hold(&mut f.client, "SELECT * FROM purchases").await;
    let (code, message) = error_code(&mut f.client, "SELECT 1").await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f.client.execute("SELECT 1".into(), None).await {
            Ok(info) => {
                if f.client
                    .do_get(info.endpoint[0].ticket.clone().unwrap())
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            // Planning takes a slot too, so GetFlightInfo waits for the release as well.
            Err(arrow_flight::error::FlightError::Tonic(status))
                if status.code() == Code::ResourceExhausted => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn queries_beyond_the_limit_wait_in_a_bounded_queue() {
    // One slot and one place in the queue.
    let mut f = fixture(|c| {
        c.limits.max_concurrent_queries = 1;
        c.limits.max_queued_queries = 1;
    })
    .await;
    // The first query holds the slot while its stream is open and unread (its result is far
    // larger than what the channel and the connection buffer).
    let held = hold(
        &mut f.client,
        "SELECT a.*, b.purchase_id AS b_id FROM purchases a, purchases b",
    )
    .await;

    // A second query waits for the slot instead of failing.
    let mut waiter = f.client.clone();
    let waiting = tokio::spawn(async move { query(&mut waiter, "SELECT 42 AS answer").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    if waiting.is_finished() {
        let ended = waiting.await.map(|batches| batches.len());
        panic!("the second query did not wait: {ended:?}");
    }

    // A third finds the queue full and is refused at once, naming both limits.
    let (code, message) = error_code(&mut f.client, "SELECT 1").await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(
        message.contains("maximum of 1 concurrent") && message.contains("1 more are waiting"),
        "{message}"
    );

    // When the first stream ends, the waiting query runs and answers.
    drop(held);
    let batches = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the queued query never ran")
        .unwrap();
    let answer = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(answer, 42);
}
