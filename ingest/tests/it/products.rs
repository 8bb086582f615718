//! `shop_ingest::products`: catalogue files of every format into a local lake, every validation
//! rule, and loads that are refused without writing anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use shop_ingest::products::{self, Error};
use shop_lake::{Lake, LakeConfig, layout, snapshot};

fn lake(dir: &Path) -> Lake {
    let root = dir.join("lake");
    std::fs::create_dir_all(&root).unwrap();
    Lake::open(&LakeConfig {
        root: root.to_str().unwrap().to_string(),
        ..LakeConfig::default()
    })
    .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The live stage.products as (id, seller, name, category, price in cents, created_at µs).
async fn live(dir: &Path, lake: &Lake) -> Vec<(i64, i64, String, String, i128, i64)> {
    let live = snapshot::read(lake, layout::STAGE, "products")
        .await
        .unwrap()
        .expect("committed");
    let mut rows = Vec::new();
    for file in &live.files {
        let path = dir.join("lake").join(file.path.as_ref());
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let ids = b.column(0).as_primitive::<Int64Type>();
            let sellers = b.column(1).as_primitive::<Int64Type>();
            let names = b.column(2).as_string::<i32>();
            let cats = b.column(3).as_string::<i32>();
            let prices = b
                .column(4)
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .unwrap();
            let created = b
                .column(5)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                rows.push((
                    ids.value(i),
                    sellers.value(i),
                    names.value(i).to_string(),
                    cats.value(i).to_string(),
                    prices.value(i),
                    created.value(i),
                ));
            }
        }
    }
    rows
}

const JAN_2: i64 = 1_767_312_000_000_000; // 2026-01-02T00:00:00Z in µs

#[tokio::test]
async fn csv_json_and_parquet_files_load_as_one_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let csv = write(
        dir.path(),
        "a.csv",
        "product_id,seller_id,name,category,price,created_at,colour\n\
         1,10,\"Mug, large\",kitchen,12.5,2026-01-02,red\n\
         2, 10 ,Tea,food,0,2026-01-02T00:00:00Z,\n",
    );
    let json = write(
        dir.path(),
        "b.jsonl",
        "{\"product_id\": 3, \"seller_id\": 11, \"name\": \"Lamp\", \"category\": \"home\", \"price\": \"99.99\", \"created_at\": \"2026-01-02 00:00:00\"}\n\
         \n\
         {\"product_id\": \"4\", \"seller_id\": 11, \"name\": \"Ünïcode ☕\", \"category\": \"home\", \"price\": 7, \"created_at\": \"2026-01-02\"}\n",
    );
    let parquet = dir.path().join("c.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("seller_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![5])),
            Arc::new(Int64Array::from(vec![12])),
            Arc::new(StringArray::from(vec!["Desk"])),
            Arc::new(StringArray::from(vec!["office"])),
            Arc::new(Float64Array::from(vec![250.25])),
            Arc::new(TimestampMicrosecondArray::from(vec![JAN_2]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let report = products::load(&lake, &[csv, json, parquet], 0)
        .await
        .unwrap();
    assert_eq!((report.rows, report.loaded, report.version), (5, 5, 1));
    assert!(report.rejected.is_empty());
    assert_eq!(report.ignored_columns, ["colour"]);
    assert_eq!(
        live(dir.path(), &lake).await,
        [
            (1, 10, "Mug, large".into(), "kitchen".into(), 1250, JAN_2),
            (2, 10, "Tea".into(), "food".into(), 0, JAN_2),
            (3, 11, "Lamp".into(), "home".into(), 9999, JAN_2),
            (4, 11, "Ünïcode ☕".into(), "home".into(), 700, JAN_2),
            (5, 12, "Desk".into(), "office".into(), 25025, JAN_2),
        ]
    );
}

/// Each bad row, the reason it must get (a substring naming the field).
const BAD_ROWS: [(&str, &str); 15] = [
    (
        r#"{"seller_id": 1, "name": "x", "category": "c", "price": "1"}"#,
        "product_id is missing",
    ),
    (
        r#"{"product_id": "abc", "seller_id": 1, "name": "x", "category": "c", "price": "1"}"#,
        "product_id must be a positive integer",
    ),
    (
        r#"{"product_id": -5, "seller_id": 1, "name": "x", "category": "c", "price": "1"}"#,
        "product_id must be a positive integer",
    ),
    (
        r#"{"product_id": 1.5, "seller_id": 1, "name": "x", "category": "c", "price": "1"}"#,
        "product_id must be a positive integer",
    ),
    (
        r#"{"product_id": 101, "name": "x", "category": "c", "price": "1"}"#,
        "seller_id is missing",
    ),
    (
        r#"{"product_id": 102, "seller_id": 1, "name": "   ", "category": "c", "price": "1"}"#,
        "name is blank",
    ),
    (
        r#"{"product_id": 103, "seller_id": 1, "name": 7, "category": "c", "price": "1"}"#,
        "name must be a string",
    ),
    (
        r#"{"product_id": 104, "seller_id": 1, "name": "x", "price": "1"}"#,
        "category is missing",
    ),
    (
        r#"{"product_id": 105, "seller_id": 1, "name": "x", "category": "c", "price": "-1.00"}"#,
        "price must be ≥ 0",
    ),
    (
        r#"{"product_id": 106, "seller_id": 1, "name": "x", "category": "c", "price": "1.999"}"#,
        "price \"1.999\" is not a decimal with at most 2 decimals",
    ),
    (
        r#"{"product_id": 107, "seller_id": 1, "name": "x", "category": "c"}"#,
        "price is missing",
    ),
    (
        r#"{"product_id": 108, "seller_id": 1, "name": "x", "category": "c", "price": "1", "created_at": "yesterday"}"#,
        "created_at \"yesterday\" is not an RFC 3339 time",
    ),
    (
        r#"{"product_id": 110, "seller_id": 1, "name": "x", "category": "c", "price": "1", "created_at": "1969-12-31"}"#,
        "created_at \"1969-12-31\" is outside 1970-01-01 to 2106-02-07",
    ),
    (
        r#"{"product_id": 109, "seller_id": 1, "name": "x", "category": "c", "price": "1""#,
        "not valid JSON",
    ),
    (r#"[1, 2]"#, "not a JSON object"),
];

#[tokio::test]
async fn every_rule_rejects_its_row_with_the_field_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let mut text = String::from(
        r#"{"product_id": 1, "seller_id": 1, "name": "ok", "category": "c", "price": "1.00"}"#,
    );
    for (row, _) in BAD_ROWS {
        text.push('\n');
        text.push_str(row);
    }
    let file = write(dir.path(), "bad.jsonl", &text);
    let err = products::load(&lake, std::slice::from_ref(&file), 0)
        .await
        .unwrap_err();
    let Error::TooManyRejected { rows, rejected, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!((*rows, *rejected), (16, 15));
    let message = err.to_string();
    assert!(message.contains("nothing was written"), "{message}");
    assert!(
        message.contains(&format!("{}:2: product_id is missing", file.display())),
        "{message}"
    );
    assert!(
        snapshot::read(&lake, layout::STAGE, "products")
            .await
            .unwrap()
            .is_none(),
        "nothing committed"
    );
    assert!(!dir.path().join("lake/stage").exists(), "no file written");

    // With room for them, the good row is published and each bad one is kept with its reason.
    let report = products::load(&lake, std::slice::from_ref(&file), 15)
        .await
        .unwrap();
    assert_eq!(report.loaded, 1);
    assert_eq!(report.rejected.len(), 15);
    for (i, (row, reason)) in BAD_ROWS.iter().enumerate() {
        let got = &report.rejected[i];
        assert_eq!(got.row, i as u64 + 2, "{got:?}");
        assert!(
            got.reason.contains(reason),
            "row {}: {:?} lacks {reason:?}",
            got.row,
            got.reason
        );
        if !reason.starts_with("not") {
            let original: serde_json::Value = serde_json::from_str(row).unwrap();
            let kept: serde_json::Value = serde_json::from_str(&got.record).unwrap();
            assert_eq!(kept, original, "the record is kept as read");
        }
    }
    let dead_letters = lake
        .open_delta(&layout::dead_letter_dir(layout::STAGE, "products"))
        .await
        .unwrap()
        .expect("the dead letters are a Delta table");
    let mut batches: Vec<RecordBatch> = Vec::new();
    for uri in dead_letters.get_file_uris().unwrap() {
        let file = dir
            .path()
            .join("lake")
            .join(uri.strip_prefix(layout::LAKE_URL).unwrap());
        batches.extend(
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap),
        );
    }
    for b in &batches {
        let loads = b.column_by_name("load_id").unwrap().as_string::<i32>();
        assert!(loads.iter().all(|l| l == Some(report.load_id.as_str())));
    }
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 15);
    assert_eq!(live(dir.path(), &lake).await.len(), 1);
}

#[tokio::test]
async fn a_repeated_product_id_rejects_every_copy() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let a = write(
        dir.path(),
        "a.csv",
        "product_id,seller_id,name,category,price\n7,1,First,c,1\n8,1,Other,c,2\n",
    );
    let b = write(
        dir.path(),
        "b.csv",
        "product_id,seller_id,name,category,price\n7,1,Second,c,3\n",
    );
    // A third copy that is invalid for another reason still counts as a copy.
    let c = write(
        dir.path(),
        "c.csv",
        "product_id,seller_id,name,category,price\n9,1,Valid,c,1\n9,1,Invalid,c,-1\n",
    );
    let report = products::load(&lake, &[a.clone(), b.clone(), c.clone()], 4)
        .await
        .unwrap();
    let nine: Vec<_> = report
        .rejected
        .iter()
        .filter(|r| r.file == c.display().to_string())
        .map(|r| r.reason.clone())
        .collect();
    assert_eq!(
        nine,
        [
            format!("product_id 9 appears 2 times ({0}:2, {0}:3)", c.display()),
            "price must be ≥ 0, got -1".to_string()
        ]
    );
    let report = products::load(&lake, &[a.clone(), b.clone()], 2)
        .await
        .unwrap();
    assert_eq!(
        live(dir.path(), &lake)
            .await
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        [8]
    );
    let reasons: Vec<_> = report
        .rejected
        .iter()
        .map(|r| (r.row, r.reason.clone()))
        .collect();
    let expected = format!(
        "product_id 7 appears 2 times ({}:2, {}:2)",
        a.display(),
        b.display()
    );
    assert_eq!(reasons, [(2, expected.clone()), (2, expected)]);
}

#[tokio::test]
async fn a_new_load_replaces_the_catalogue_and_bad_loads_keep_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path());
    let first = write(
        dir.path(),
        "v1.csv",
        "product_id,seller_id,name,category,price\n1,1,A,c,1\n2,1,B,c,2\n",
    );
    products::load(&lake, &[first], 0).await.unwrap();
    let second = write(
        dir.path(),
        "v2.csv",
        "product_id,seller_id,name,category,price\n2,1,B2,c,2\n3,1,C,c,3\n",
    );
    let report = products::load(&lake, &[second], 0).await.unwrap();
    assert_eq!(report.version, 2);
    let ids: Vec<i64> = live(dir.path(), &lake).await.iter().map(|p| p.0).collect();
    assert_eq!(ids, [2, 3]);

    // Refused loads change nothing: all rows bad, an empty file, a short CSV row, an unknown
    // format, a missing file.
    let all_bad = write(
        dir.path(),
        "bad.csv",
        "product_id,seller_id,name,category,price\n0,1,A,c,1\n",
    );
    let err = products::load(&lake, &[all_bad], 5).await.unwrap_err();
    assert!(matches!(err, Error::NothingValid { .. }), "{err}");
    let empty = write(dir.path(), "empty.jsonl", "");
    let err = products::load(&lake, &[empty], 0).await.unwrap_err();
    assert!(matches!(err, Error::NothingValid { rows: 0, .. }), "{err}");
    let short = write(
        dir.path(),
        "short.csv",
        "product_id,seller_id,name,category,price\n4,1,D\n",
    );
    let err = products::load(&lake, &[short], 0).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(":2: has 3 fields, the header has 5"),
        "{err}"
    );
    let unknown = write(dir.path(), "x.xml", "<p/>");
    let err = products::load(&lake, &[unknown], 0).await.unwrap_err();
    assert!(err.to_string().contains("unknown format"), "{err}");
    let err = products::load(&lake, &[dir.path().join("nope.csv")], 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope.csv"), "{err}");
    let not_parquet = write(dir.path(), "fake.parquet", "not parquet");
    let err = products::load(&lake, &[not_parquet], 0).await.unwrap_err();
    assert!(err.to_string().contains("not a Parquet file"), "{err}");
    assert_eq!(
        live(dir.path(), &lake)
            .await
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        [2, 3]
    );
}

#[test]
fn formats_by_extension() {
    use products::Format;
    assert_eq!(Format::of(Path::new("a.PARQUET")), Some(Format::Parquet));
    assert_eq!(Format::of(Path::new("a.csv")), Some(Format::Csv));
    assert_eq!(Format::of(Path::new("a.ndjson")), Some(Format::Json));
    assert_eq!(Format::of(Path::new("a")), None);
}
