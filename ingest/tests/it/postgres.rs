//! PostgreSQL → lake exports against the real PostgreSQL of `scripts/services.sh`.
//!
//! Expected values are written out literally or read from PostgreSQL over a different path
//! (sqlx row decoding), never through the exporter under test.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arrow::array::{
    Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use shop_ingest::postgres::generate::{GenerateSpec, generate};
use shop_ingest::postgres::{self, ExportOptions, Mode};
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions, layout, session, snapshot};
use shop_test_support::{TestPostgres, temp_lake};
use sqlx::Executor;

async fn export(
    pg: &TestPostgres,
    lake: &Lake,
    table: &str,
    options: &ExportOptions,
) -> postgres::Result<postgres::ExportReport> {
    postgres::export_table(pg.pool(), lake, table, options, &AtomicU64::new(0)).await
}

/// Every row of `stage.<table>` as one batch, read from the live files of its Delta log.
async fn read_stage(lake: &Lake, table: &str) -> RecordBatch {
    let live = snapshot::read(lake, layout::STAGE, table)
        .await
        .unwrap()
        .expect("the table exists");
    let mut batches = Vec::new();
    let mut schema = None;
    for file in &live.files {
        let builder = shop_lake::reader::open_parquet(lake, file.path.clone(), file.size)
            .await
            .unwrap();
        schema = Some(Arc::clone(builder.schema()));
        let stream = builder.build().unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    concat_batches(&schema.unwrap(), &batches).unwrap()
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| {
            panic!(
                "{name} has type {}",
                batch.schema().field_with_name(name).unwrap().data_type()
            )
        })
}

fn micros(text: &str) -> i64 {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn days(text: &str) -> i32 {
    (NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
        - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
    .num_days() as i32
}

#[tokio::test]
async fn every_mapped_type_round_trips_with_nulls_unicode_and_extremes() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    pg.pool()
        .execute(
            r#"
            CREATE TYPE mood AS ENUM ('happy', 'sad');
            CREATE DOMAIN price AS numeric(12,2) CHECK (VALUE >= 0);
            CREATE TABLE all_types (
                id      int4 PRIMARY KEY,
                b       boolean,
                i2      smallint,
                i4      integer,
                i8      bigint,
                f4      real,
                f8      double precision,
                n38     numeric(38,10),
                n5      numeric(5,2),
                nfree   numeric,
                dom     price,
                t       text,
                vc      varchar(12),
                ch      char(5),
                e       mood,
                u       uuid,
                j       json,
                jb      jsonb,
                by      bytea,
                d       date,
                tm      time,
                ts      timestamp,
                tstz    timestamptz
            );
            INSERT INTO all_types VALUES
              (1, true, -32768, -2147483648, -9223372036854775808, -3.4e38, -1.7976931348623157e308,
               -9999999999999999999999999999.9999999999, -999.99, -123456789.123456789, 0.00,
               '日本語 🚀 Zoë "quoted", comma', 'ab', 'ab', 'happy',
               '00000000-0000-0000-0000-000000000000', '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2]}',
               '\x00ff10', '-infinity', '00:00:00', '0001-01-01 00:00:00', '-infinity'),
              (2, false, 32767, 2147483647, 9223372036854775807, 'NaN', 'Infinity',
               9999999999999999999999999999.9999999999, 0.01, 0, 9999999999.99,
               '', 'twelve chars', 'abcde', 'sad',
               'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '[]', 'null',
               '\x', 'infinity', '23:59:59.999999', '9999-12-31 23:59:59.999999',
               '2024-03-31 02:30:00.5+02'),
              (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
            "#,
        )
        .await
        .unwrap();
    let temp = temp_lake();
    let lake = temp.lake.clone();
    let report = export(&pg, &lake, "all_types", &ExportOptions::default())
        .await
        .unwrap();
    assert_eq!((report.rows_read, report.rows_total), (3, 3));
    let b = read_stage(&lake, "all_types").await;
    assert_eq!(b.num_rows(), 3);

    assert_eq!(
        col::<Int32Array>(&b, "id"),
        &Int32Array::from(vec![1, 2, 3])
    );
    assert_eq!(
        col::<BooleanArray>(&b, "b"),
        &BooleanArray::from(vec![Some(true), Some(false), None])
    );
    assert_eq!(
        col::<Int16Array>(&b, "i2"),
        &Int16Array::from(vec![Some(i16::MIN), Some(i16::MAX), None])
    );
    assert_eq!(
        col::<Int32Array>(&b, "i4"),
        &Int32Array::from(vec![Some(i32::MIN), Some(i32::MAX), None])
    );
    assert_eq!(
        col::<Int64Array>(&b, "i8"),
        &Int64Array::from(vec![Some(i64::MIN), Some(i64::MAX), None])
    );
    let f4 = col::<Float32Array>(&b, "f4");
    assert_eq!(f4.value(0), -3.4e38_f32);
    assert!(f4.value(1).is_nan() && f4.is_null(2));
    assert_eq!(
        col::<Float64Array>(&b, "f8"),
        &Float64Array::from(vec![Some(f64::MIN), Some(f64::INFINITY), None])
    );
    let max38 = 10_i128.pow(38) - 1;
    assert_eq!(
        col::<Decimal128Array>(&b, "n38"),
        &Decimal128Array::from(vec![Some(-max38), Some(max38), None])
            .with_precision_and_scale(38, 10)
            .unwrap()
    );
    assert_eq!(
        col::<Decimal128Array>(&b, "n5"),
        &Decimal128Array::from(vec![Some(-99_999), Some(1), None])
            .with_precision_and_scale(5, 2)
            .unwrap()
    );
    assert_eq!(
        col::<Decimal128Array>(&b, "nfree"),
        &Decimal128Array::from(vec![Some(-123_456_789_123_456_789), Some(0), None])
            .with_precision_and_scale(38, 9)
            .unwrap()
    );
    assert_eq!(
        col::<Decimal128Array>(&b, "dom"),
        &Decimal128Array::from(vec![Some(0), Some(999_999_999_999), None])
            .with_precision_and_scale(12, 2)
            .unwrap()
    );
    assert_eq!(
        col::<StringArray>(&b, "t"),
        &StringArray::from(vec![
            Some("日本語 🚀 Zoë \"quoted\", comma"),
            Some(""),
            None
        ])
    );
    assert_eq!(
        col::<StringArray>(&b, "vc"),
        &StringArray::from(vec![Some("ab"), Some("twelve chars"), None])
    );
    // char(n) keeps PostgreSQL's blank padding, as its binary form has it.
    assert_eq!(
        col::<StringArray>(&b, "ch"),
        &StringArray::from(vec![Some("ab   "), Some("abcde"), None])
    );
    assert_eq!(
        col::<StringArray>(&b, "e"),
        &StringArray::from(vec![Some("happy"), Some("sad"), None])
    );
    assert_eq!(
        col::<StringArray>(&b, "u"),
        &StringArray::from(vec![
            Some("00000000-0000-0000-0000-000000000000"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            None
        ])
    );
    // json keeps the text as written; jsonb is PostgreSQL's normalised form.
    assert_eq!(
        col::<StringArray>(&b, "j"),
        &StringArray::from(vec![Some(r#"{"b": 1, "a": [1, 2]}"#), Some("[]"), None])
    );
    assert_eq!(
        col::<StringArray>(&b, "jb"),
        &StringArray::from(vec![Some(r#"{"a": [1, 2], "b": 1}"#), Some("null"), None])
    );
    assert_eq!(
        col::<BinaryArray>(&b, "by"),
        &BinaryArray::from(vec![Some(&[0x00_u8, 0xff, 0x10][..]), Some(&[][..]), None])
    );
    assert_eq!(
        col::<Date32Array>(&b, "d"),
        &Date32Array::from(vec![
            Some(days("0001-01-01")),
            Some(days("9999-12-31")),
            None
        ])
    );
    assert_eq!(
        col::<StringArray>(&b, "tm"),
        &StringArray::from(vec![Some("00:00:00.000000"), Some("23:59:59.999999"), None])
    );
    let ts = col::<TimestampMicrosecondArray>(&b, "ts");
    assert_eq!(ts.timezone(), None);
    assert_eq!(
        ts.iter().collect::<Vec<_>>(),
        vec![
            Some(micros("0001-01-01 00:00:00")),
            Some(micros("9999-12-31 23:59:59.999999")),
            None
        ]
    );
    let tstz = col::<TimestampMicrosecondArray>(&b, "tstz");
    assert_eq!(tstz.timezone(), Some("UTC"));
    assert_eq!(
        tstz.iter().collect::<Vec<_>>(),
        vec![
            Some(micros("0001-01-01 00:00:00")),
            Some(micros("2024-03-31 00:30:00.5")),
            None
        ]
    );
    pg.cleanup().await;
}

#[tokio::test]
async fn unsupported_types_and_unrepresentable_values_are_named_and_publish_nothing() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    pg.pool()
        .execute(
            "CREATE TABLE with_array (id int PRIMARY KEY, tags text[]);
             CREATE TABLE with_nan (id int PRIMARY KEY, amount numeric(10,2));
             INSERT INTO with_nan SELECT g, g FROM generate_series(1, 5000) g;
             INSERT INTO with_nan VALUES (5001, 'NaN');
             CREATE TABLE far_future (id int PRIMARY KEY, at timestamp);
             INSERT INTO far_future VALUES (1, '294270-01-01 00:00:00');
             CREATE TABLE before_year_one (id int PRIMARY KEY, d date);
             INSERT INTO before_year_one VALUES (1, '4713-01-01 BC');",
        )
        .await
        .unwrap();
    let temp = temp_lake();
    let lake = temp.lake.clone();
    let options = ExportOptions {
        batch_rows: 1000,
        ..Default::default()
    };
    let err = export(&pg, &lake, "with_array", &options)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("with_array.tags") && msg.contains("text[]"),
        "{msg}"
    );

    let err = export(&pg, &lake, "with_nan", &options).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("with_nan.amount") && msg.contains("numeric(10,2)") && msg.contains("NaN"),
        "{msg}"
    );
    let err = export(&pg, &lake, "far_future", &options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("far_future.at"), "{err}");
    let err = export(&pg, &lake, "before_year_one", &options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("before_year_one.d"), "{err}");
    assert!(err.to_string().contains("years 1 to 9999"), "{err}");
    let err = export(&pg, &lake, "no_such_table", &options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
    for table in ["with_array", "with_nan", "far_future", "before_year_one"] {
        assert!(
            snapshot::read(&lake, layout::STAGE, table)
                .await
                .unwrap()
                // At most the empty table its first writer created: no snapshot commit.
                .is_none_or(|s| s.files.is_empty() && s.properties.is_empty()),
            "{table} was committed"
        );
    }
    pg.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let started = std::time::Instant::now();
    let err = postgres::connect(
        "postgres://shop:secret@127.0.0.1:1/shop",
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1/shop"), "{msg}");
    assert!(!msg.contains("secret"), "the password leaked: {msg}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn readers_see_the_old_or_the_new_snapshot_never_a_mix() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    const ROWS: i64 = 20_000;
    pg.pool()
        .execute(
            format!(
                "CREATE TABLE versions (id bigint PRIMARY KEY, v int NOT NULL);
                 INSERT INTO versions SELECT g, 1 FROM generate_series(1, {ROWS}) g;"
            )
            .as_str(),
        )
        .await
        .unwrap();
    let temp = temp_lake();
    let lake = temp.lake.clone();
    // Many small files per snapshot, so that a reader listing files instead of following the
    // Delta log would see a mix.
    let options = ExportOptions {
        batch_rows: 500,
        target_file_bytes: 16 << 10,
        ..Default::default()
    };
    export(&pg, &lake, "versions", &options).await.unwrap();

    let catalog = LakeCatalog::new(
        lake.clone(),
        LakeCatalogOptions {
            refresh_interval: Duration::from_millis(20),
        },
    );
    catalog.refresh().await.unwrap();
    let _refresher = catalog.spawn_refresher();
    let ctx: SessionContext =
        session::context(session::session_config(), session::runtime(&lake), &catalog);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batches = ctx
                    .sql("SELECT count(*), count(DISTINCT id), min(v), max(v) FROM stage.versions")
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                let row = &batches[0];
                let get = |i: usize| {
                    let c = row.column(i);
                    c.as_any()
                        .downcast_ref::<Int64Array>()
                        .map(|a| a.value(0))
                        .unwrap_or_else(|| {
                            i64::from(c.as_any().downcast_ref::<Int32Array>().unwrap().value(0))
                        })
                };
                let (count, distinct, min, max) = (get(0), get(1), get(2), get(3));
                assert_eq!(
                    (count, distinct),
                    (ROWS, ROWS),
                    "a reader saw a partial snapshot"
                );
                assert_eq!(min, max, "a reader saw rows of two snapshots");
                seen.push(min);
            }
            seen
        })
    };
    for version in 2..=6 {
        pg.pool()
            .execute(format!("UPDATE versions SET v = {version}").as_str())
            .await
            .unwrap();
        export(&pg, &lake, "versions", &options).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "versions went back: {seen:?}"
    );
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert!(
        distinct.len() >= 3,
        "the reader must observe several switches to prove anything: {distinct:?}"
    );
    pg.cleanup().await;
}

/// `(customer_id, city, updated_at)` of every customer, read by sqlx.
async fn pg_customers(pg: &TestPostgres) -> Vec<(i64, Option<String>, DateTime<Utc>)> {
    sqlx::query_as("SELECT customer_id, city, updated_at FROM customers ORDER BY customer_id")
        .fetch_all(pg.pool())
        .await
        .unwrap()
}

async fn lake_customers(lake: &Lake) -> Vec<(i64, Option<String>, DateTime<Utc>)> {
    let b = read_stage(lake, "customers").await;
    let ids = col::<Int64Array>(&b, "customer_id");
    let cities = col::<StringArray>(&b, "city");
    let updated = col::<TimestampMicrosecondArray>(&b, "updated_at");
    let mut rows: Vec<_> = (0..b.num_rows())
        .map(|i| {
            (
                ids.value(i),
                (!cities.is_null(i)).then(|| cities.value(i).to_string()),
                DateTime::from_timestamp_micros(updated.value(i)).unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

#[tokio::test]
async fn incremental_exports_keep_exactly_the_latest_version_of_each_row() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let spec = GenerateSpec {
        customers: 3_000,
        sellers: 20,
        seed: 7,
        replace: false,
    };
    generate(pg.pool(), &spec, &AtomicU64::new(0))
        .await
        .unwrap();
    let temp = temp_lake();
    let lake = temp.lake.clone();
    let incremental = ExportOptions {
        mode: Mode::Incremental,
        batch_rows: 700,
        target_file_bytes: 16 << 10,
        ..Default::default()
    };
    // No snapshot yet: the first incremental run copies everything.
    let first = export(&pg, &lake, "customers", &incremental).await.unwrap();
    assert_eq!(first.mode, Mode::Snapshot);
    assert_eq!(first.rows_total, 3_000);
    assert_eq!(lake_customers(&lake).await, pg_customers(&pg).await);

    // Updates (twice for some rows), deletes and inserts.
    pg.pool()
        .execute(
            "UPDATE customers SET city = 'Zürich' WHERE customer_id % 7 = 0;
             UPDATE customers SET city = 'Genève' WHERE customer_id % 14 = 0;
             DELETE FROM customers WHERE customer_id % 11 = 0;
             INSERT INTO customers (customer_id, name, country) SELECT g, 'New ' || g, 'CH'
               FROM generate_series(5001, 5010) g;",
        )
        .await
        .unwrap();
    let second = export(&pg, &lake, "customers", &incremental).await.unwrap();
    assert_eq!(second.mode, Mode::Incremental);
    let updated_live = (1..=3_000).filter(|i| i % 7 == 0 && i % 11 != 0).count() as u64;
    // Changed rows plus whatever the look-back window re-reads, far fewer than the table.
    assert!(
        second.rows_read >= updated_live + 10 && second.rows_read < 1_000,
        "{second:?}"
    );
    assert_eq!(second.rows_deleted, 3_000 / 11);
    let lake_rows = lake_customers(&lake).await;
    assert_eq!(lake_rows, pg_customers(&pg).await);
    let ids: std::collections::HashSet<_> = lake_rows.iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), lake_rows.len(), "a row appears twice");
    assert!(lake_rows.iter().any(|r| r.1.as_deref() == Some("Genève")));

    // Nothing changed: the snapshot stays equal to the table.
    let third = export(&pg, &lake, "customers", &incremental).await.unwrap();
    assert_eq!(third.mode, Mode::Incremental);
    assert_eq!(third.rows_total, second.rows_total);
    assert_eq!(lake_customers(&lake).await, pg_customers(&pg).await);

    // A row inserted with an updated_at older than the watermark cannot be found by the
    // incremental filter: the merge notices the gap and copies the table in full instead.
    pg.pool()
        .execute(
            "INSERT INTO customers (customer_id, name, country, updated_at)
             VALUES (6001, 'Backdated', 'AT', '2020-01-01T00:00:00Z')",
        )
        .await
        .unwrap();
    let fourth = export(&pg, &lake, "customers", &incremental).await.unwrap();
    assert_eq!(fourth.mode, Mode::Snapshot, "{fourth:?}");
    assert_eq!(lake_customers(&lake).await, pg_customers(&pg).await);

    // A snapshot run from the same table gives the same rows.
    export(&pg, &lake, "customers", &ExportOptions::default())
        .await
        .unwrap();
    assert_eq!(lake_customers(&lake).await, pg_customers(&pg).await);
    pg.cleanup().await;
}

#[tokio::test]
async fn a_changed_table_definition_falls_back_to_a_snapshot() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    generate(
        pg.pool(),
        &GenerateSpec {
            customers: 200,
            sellers: 5,
            seed: 1,
            replace: false,
        },
        &AtomicU64::new(0),
    )
    .await
    .unwrap();
    let temp = temp_lake();
    let lake = temp.lake.clone();
    let incremental = ExportOptions {
        mode: Mode::Incremental,
        ..Default::default()
    };
    export(&pg, &lake, "sellers", &incremental).await.unwrap();
    pg.pool()
        .execute("ALTER TABLE sellers ADD COLUMN tier smallint")
        .await
        .unwrap();
    let report = export(&pg, &lake, "sellers", &incremental).await.unwrap();
    assert_eq!(report.mode, Mode::Snapshot);
    let b = read_stage(&lake, "sellers").await;
    assert_eq!(b.num_rows(), 5);
    assert!(b.column_by_name("tier").is_some());

    // A table without a primary key cannot be merged incrementally: a clear refusal.
    pg.pool()
        .execute("CREATE TABLE events (at timestamptz, updated_at timestamptz)")
        .await
        .unwrap();
    let err = export(&pg, &lake, "events", &incremental)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("primary key"), "{err}");
    // Nor one whose updated_at may be NULL: such rows would never be exported.
    pg.pool()
        .execute("CREATE TABLE loose (id int PRIMARY KEY, updated_at timestamptz)")
        .await
        .unwrap();
    let err = export(&pg, &lake, "loose", &incremental).await.unwrap_err();
    assert!(err.to_string().contains("nullable"), "{err}");
    pg.cleanup().await;
}

#[tokio::test]
async fn generation_is_deterministic_and_refuses_to_overwrite() {
    let Some(pg) = TestPostgres::create().await else {
        return;
    };
    let spec = GenerateSpec {
        customers: 12_345,
        sellers: 77,
        seed: 3,
        replace: false,
    };
    generate(pg.pool(), &spec, &AtomicU64::new(0))
        .await
        .unwrap();
    let digest = |pool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT md5(string_agg(c::text, '|' ORDER BY customer_id)) FROM customers c",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let first = digest(pg.pool()).await;
    let err = generate(pg.pool(), &spec, &AtomicU64::new(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--replace"), "{err}");
    generate(
        pg.pool(),
        &GenerateSpec {
            replace: true,
            ..spec.clone()
        },
        &AtomicU64::new(0),
    )
    .await
    .unwrap();
    assert_eq!(digest(pg.pool()).await, first);
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM sellers),
                (SELECT count(*) FROM customers WHERE email IS NULL)",
    )
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert_eq!((counts.0, counts.1), (12_345, 77));
    assert!(counts.2 > 0 && counts.2 < 12_345 / 10, "{counts:?}");
    // The identity continues after the generated ids.
    let next: i64 = sqlx::query_scalar(
        "INSERT INTO sellers (name, country) VALUES ('Next', 'DE') RETURNING seller_id",
    )
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert_eq!(next, 78);
    pg.cleanup().await;
}
