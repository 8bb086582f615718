//! Product catalogue files into `stage.products` (`shop-analytics ingest products FILE…`).
//!
//! The files of one load are the whole catalogue: Parquet, CSV (with a header row) or JSON
//! (one object per line, or one array of objects). Every row is validated:
//!
//! | field | rule |
//! | --- | --- |
//! | `product_id` | required, an integer > 0, unique across the load |
//! | `seller_id` | required, an integer > 0 |
//! | `name` | required, not blank, at most 1000 characters |
//! | `category` | required, not blank, at most 200 characters |
//! | `price` | required, a decimal ≥ 0 with at most 2 decimals and 10 integer digits |
//! | `created_at` | optional RFC 3339 time or `YYYY-MM-DD[ HH:MM:SS]` (UTC) from 1970 to 2106-02-07; default: the load time |
//!
//! Other columns are ignored (and named in a warning). A product id that appears more than once
//! (counting rows rejected for another reason) rejects every copy: which one is right cannot be
//! known.
//!
//! A rejected row is reported with its file, row number, the field and the reason. When more
//! rows are rejected than `max_rejected` (default 0), or no row is valid, nothing is written and
//! the error lists the first reasons. Otherwise the rejected rows are appended to the Delta
//! table `stage/_rejected/products` (served as `stage.products_rejected`) and then the valid ones
//! are committed as a new snapshot of `stage.products` (one Delta commit), so a load is atomic
//! for readers and nothing is dropped without a record.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use shop_lake::delta::{CommitInfo, Mode};
use shop_lake::snapshot::{self, SnapshotWriter};
use shop_lake::{Lake, layout};

use shop_types::purchases::parse_price;
use shop_types::tables::{PRODUCTS, PRODUCTS_REJECTED};

/// The stage table the catalogue lands in.
pub const TABLE: &str = PRODUCTS.name;

/// Errors of a load.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(
        "{rejected} of {rows} rows rejected (more than --max-rejected {max}); nothing was written. \
         First reasons:\n{first}"
    )]
    TooManyRejected {
        rows: u64,
        rejected: u64,
        max: u64,
        first: String,
    },
    #[error("no valid product in {rows} rows; nothing was written. First reasons:\n{first}")]
    NothingValid { rows: u64, first: String },
    #[error(transparent)]
    Lake(#[from] shop_lake::Error),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A catalogue file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    /// JSON lines, or one JSON array of objects.
    Json,
}

impl Format {
    /// The format of `path` by its extension.
    pub fn of(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Some(Self::Parquet),
            "csv" => Some(Self::Csv),
            "json" | "jsonl" | "ndjson" => Some(Self::Json),
            _ => None,
        }
    }
}

/// A validated product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub product_id: i64,
    pub seller_id: i64,
    pub name: String,
    pub category: String,
    /// Cents.
    pub price: i128,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// A row that was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub file: String,
    /// 1-based: the line of a CSV or JSON-lines file (the header is line 1), the element of a
    /// JSON array, the row of a Parquet file.
    pub row: u64,
    /// The row as JSON (values as read).
    pub record: String,
    pub reason: String,
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub rows: u64,
    pub loaded: u64,
    pub rejected: Vec<RejectedRow>,
    /// The Delta version committed.
    pub version: u64,
    /// The load's id: the `load_id` of its rejected rows and of its commit's properties.
    pub load_id: String,
    /// Columns present in the files but not in `stage.products`.
    pub ignored_columns: Vec<String>,
}

/// One row as read, before validation.
struct RawRow {
    file: String,
    row: u64,
    /// `Err` for a row that could not even be parsed (malformed JSON).
    fields: std::result::Result<Map<String, Value>, String>,
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn read_csv(path: &Path, out: &mut Vec<RawRow>) -> Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .map_err(|e| file_error(path, e))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| file_error(path, e))?
        .iter()
        .map(str::to_string)
        .collect();
    let file = path.display().to_string();
    for record in reader.records() {
        let (row, fields) = match record {
            Ok(record) => {
                let row = record.position().map_or(0, |p| p.line());
                let fields = if record.len() != headers.len() {
                    Err(format!(
                        "has {} fields, the header has {}",
                        record.len(),
                        headers.len()
                    ))
                } else {
                    Ok(headers
                        .iter()
                        .zip(record.iter())
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
                        .collect())
                };
                (row, fields)
            }
            Err(e) => (
                e.position().map_or(0, |p| p.line()),
                Err(format!("not valid CSV: {e}")),
            ),
        };
        out.push(RawRow {
            file: file.clone(),
            row,
            fields,
        });
    }
    Ok(headers)
}

fn read_json(path: &Path, out: &mut Vec<RawRow>) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
    let file = path.display().to_string();
    let object = |value: Value| match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("not a JSON object: {other}")),
    };
    let mut columns = Vec::new();
    let mut push = |row: u64, fields: std::result::Result<Map<String, Value>, String>| {
        if let Ok(map) = &fields {
            for key in map.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
        out.push(RawRow {
            file: file.clone(),
            row,
            fields,
        });
    };
    if text.trim_start().starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| file_error(path, format!("not a JSON array of objects: {e}")))?;
        for (i, value) in values.into_iter().enumerate() {
            push(i as u64 + 1, object(value));
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields = serde_json::from_str::<Value>(line)
                .map_err(|e| format!("not valid JSON: {e}"))
                .and_then(object);
            push(i as u64 + 1, fields);
        }
    }
    Ok(columns)
}

fn read_parquet(path: &Path, out: &mut Vec<RawRow>) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| file_error(path, format!("not a Parquet file: {e}")))?
        .build()
        .map_err(|e| file_error(path, e))?;
    let name = path.display().to_string();
    let mut columns = Vec::new();
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| file_error(path, e))?;
        let schema = batch.schema();
        if columns.is_empty() {
            columns = schema.fields().iter().map(|f| f.name().clone()).collect();
        }
        // Every value as text, then validated like CSV: one set of rules for every format.
        let mut texts = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let text = match field.data_type() {
                DataType::Timestamp(_, _) => cast(
                    column,
                    &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                )
                .and_then(|c| cast(&c, &DataType::Utf8)),
                _ => cast(column, &DataType::Utf8),
            };
            texts.push(text.ok());
        }
        for i in 0..batch.num_rows() {
            row += 1;
            let mut fields = Map::new();
            for (field, text) in schema.fields().iter().zip(&texts) {
                let Some(text) = text else {
                    continue; // a type with no text form (lists, structs): not a product column
                };
                let strings = text
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .expect("cast to Utf8");
                if strings.is_valid(i) {
                    fields.insert(
                        field.name().clone(),
                        Value::String(strings.value(i).to_string()),
                    );
                }
            }
            out.push(RawRow {
                file: name.clone(),
                row,
                fields: Ok(fields),
            });
        }
    }
    Ok(columns)
}

fn positive_id(fields: &Map<String, Value>, name: &str) -> std::result::Result<i64, String> {
    let value = fields
        .get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("{name} is missing"))?;
    let id = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match id {
        Some(id) if id > 0 => Ok(id),
        _ => Err(format!("{name} must be a positive integer, got {value}")),
    }
}

fn text(
    fields: &Map<String, Value>,
    name: &str,
    max_chars: usize,
) -> std::result::Result<String, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(format!("{name} is missing")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("{name} is blank")),
        Some(Value::String(s)) if s.chars().count() > max_chars => {
            Err(format!("{name} is longer than {max_chars} characters"))
        }
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(other) => Err(format!("{name} must be a string, got {other}")),
    }
}

fn created_at(
    fields: &Map<String, Value>,
    default: DateTime<Utc>,
) -> std::result::Result<i64, String> {
    let text = match fields.get("created_at") {
        None | Some(Value::Null) => return Ok(default.timestamp_micros()),
        Some(Value::String(s)) => s.trim(),
        Some(other) => return Err(format!("created_at must be a time, got {other}")),
    };
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").map(|t| t.and_utc()))
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        })
        .map_err(|_| {
            format!("created_at {text:?} is not an RFC 3339 time or YYYY-MM-DD[ HH:MM:SS]")
        })?;
    // What ClickHouse's DateTime holds, where the products dimension is copied.
    let micros = parsed.timestamp_micros();
    if !(0..=i64::from(u32::MAX) * 1_000_000).contains(&micros) {
        return Err(format!(
            "created_at {text:?} is outside 1970-01-01 to 2106-02-07"
        ));
    }
    Ok(micros)
}

/// Validates one row.
pub fn validate(
    fields: &Map<String, Value>,
    now: DateTime<Utc>,
) -> std::result::Result<Product, String> {
    Ok(Product {
        product_id: positive_id(fields, "product_id")?,
        seller_id: positive_id(fields, "seller_id")?,
        name: text(fields, "name", 1000)?,
        category: text(fields, "category", 200)?,
        price: match fields.get("price") {
            None | Some(Value::Null) => return Err("price is missing".into()),
            Some(value) => parse_price(value, "price")?,
        },
        created_at: created_at(fields, now)?,
    })
}

fn products_batch(products: &[Product]) -> Result<RecordBatch> {
    let mut id = Int64Builder::new();
    let mut seller = Int64Builder::new();
    let mut name = StringBuilder::new();
    let mut category = StringBuilder::new();
    let mut price = Decimal128Builder::new().with_precision_and_scale(12, 2)?;
    let mut created = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for p in products {
        id.append_value(p.product_id);
        seller.append_value(p.seller_id);
        name.append_value(&p.name);
        category.append_value(&p.category);
        price.append_value(p.price);
        created.append_value(p.created_at);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(seller.finish()),
        Arc::new(name.finish()),
        Arc::new(category.finish()),
        Arc::new(price.finish()),
        Arc::new(created.finish()),
    ];
    Ok(RecordBatch::try_new(PRODUCTS.schema_ref(), columns)?)
}

fn rejected_batch(load_id: &str, rows: &[RejectedRow], at: DateTime<Utc>) -> Result<RecordBatch> {
    let mut load = StringBuilder::new();
    let mut file = StringBuilder::new();
    let mut row = Int64Builder::new();
    let mut record = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut when = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for r in rows {
        load.append_value(load_id);
        file.append_value(&r.file);
        row.append_value(i64::try_from(r.row).unwrap_or(i64::MAX));
        record.append_value(&r.record);
        reason.append_value(&r.reason);
        when.append_value(at.timestamp_micros());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(load.finish()),
        Arc::new(file.finish()),
        Arc::new(row.finish()),
        Arc::new(record.finish()),
        Arc::new(reason.finish()),
        Arc::new(when.finish()),
    ];
    Ok(RecordBatch::try_new(
        PRODUCTS_REJECTED.schema_ref(),
        columns,
    )?)
}

fn first_reasons(rejected: &[RejectedRow]) -> String {
    let mut text: Vec<String> = rejected
        .iter()
        .take(20)
        .map(|r| format!("  {}:{}: {}", r.file, r.row, r.reason))
        .collect();
    if rejected.len() > 20 {
        text.push(format!("  … and {} more", rejected.len() - 20));
    }
    text.join("\n")
}

/// What [`read`] found in the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Valid products, by product_id.
    pub products: Vec<Product>,
    /// Rejected rows, by file and row.
    pub rejected: Vec<RejectedRow>,
    /// Columns present in the files but not in `stage.products`.
    pub ignored_columns: Vec<String>,
    /// Rows read.
    pub rows: u64,
}

/// Reads and validates `files` (`now` is the default `created_at`).
pub fn read(files: &[PathBuf], now: DateTime<Utc>) -> Result<Read> {
    let mut raw = Vec::new();
    let mut ignored = Vec::new();
    let known = PRODUCTS.column_names();
    for path in files {
        let columns = match Format::of(path) {
            Some(Format::Csv) => read_csv(path, &mut raw)?,
            Some(Format::Json) => read_json(path, &mut raw)?,
            Some(Format::Parquet) => read_parquet(path, &mut raw)?,
            None => {
                return Err(file_error(
                    path,
                    "unknown format: name it .parquet, .csv, .json, .jsonl or .ndjson",
                ));
            }
        };
        for column in columns {
            if !known.contains(&column) && !ignored.contains(&column) {
                ignored.push(column);
            }
        }
    }
    let rows = raw.len() as u64;
    let mut valid: Vec<(Product, usize)> = Vec::new();
    let mut rejected = Vec::new();
    let record = |row: &RawRow| match &row.fields {
        Ok(map) => Value::Object(map.clone()).to_string(),
        Err(_) => String::new(),
    };
    for (index, row) in raw.iter().enumerate() {
        let result = match &row.fields {
            Ok(fields) => validate(fields, now),
            Err(reason) => Err(reason.clone()),
        };
        match result {
            Ok(product) => valid.push((product, index)),
            Err(reason) => rejected.push(RejectedRow {
                file: row.file.clone(),
                row: row.row,
                record: record(row),
                reason,
            }),
        }
    }
    // A repeated product_id rejects every copy, also when another copy was rejected already.
    let mut seen: HashMap<i64, Vec<usize>> = HashMap::new();
    for (index, row) in raw.iter().enumerate() {
        if let Ok(fields) = &row.fields
            && let Ok(id) = positive_id(fields, "product_id")
        {
            seen.entry(id).or_default().push(index);
        }
    }
    let mut products = Vec::with_capacity(valid.len());
    for (product, index) in valid {
        let copies = &seen[&product.product_id];
        if copies.len() == 1 {
            products.push(product);
            continue;
        }
        let places: Vec<String> = copies
            .iter()
            .map(|i| format!("{}:{}", raw[*i].file, raw[*i].row))
            .collect();
        let row = &raw[index];
        rejected.push(RejectedRow {
            file: row.file.clone(),
            row: row.row,
            record: record(row),
            reason: format!(
                "product_id {} appears {} times ({})",
                product.product_id,
                copies.len(),
                places.join(", ")
            ),
        });
    }
    rejected.sort_by(|a, b| (&a.file, a.row).cmp(&(&b.file, b.row)));
    products.sort_by_key(|p| p.product_id);
    Ok(Read {
        products,
        rejected,
        ignored_columns: ignored,
        rows,
    })
}

/// Loads `files` as the whole catalogue into `stage.products` (see the module doc).
pub async fn load(lake: &Lake, files: &[PathBuf], max_rejected: u64) -> Result<LoadReport> {
    let now = Utc::now();
    let Read {
        products,
        rejected,
        ignored_columns,
        rows,
    } = read(files, now)?;
    if rejected.len() as u64 > max_rejected {
        return Err(Error::TooManyRejected {
            rows,
            rejected: rejected.len() as u64,
            max: max_rejected,
            first: first_reasons(&rejected),
        });
    }
    if products.is_empty() {
        return Err(Error::NothingValid {
            rows,
            first: first_reasons(&rejected),
        });
    }
    let load_id = new_load_id(now);
    if !rejected.is_empty() {
        let batch = rejected_batch(&load_id, &rejected, now)?;
        lake.write_delta(
            &layout::dead_letter_dir(layout::STAGE, TABLE),
            &[],
            vec![batch],
            Mode::Append,
            CommitInfo::default(),
        )
        .await?;
    }
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let properties = BTreeMap::from([
        ("source".to_string(), sources.join(",")),
        ("rejected_rows".to_string(), rejected.len().to_string()),
        ("load_id".to_string(), load_id.clone()),
    ]);
    let writer = SnapshotWriter::begin(
        lake,
        layout::STAGE,
        TABLE,
        PRODUCTS.schema_ref(),
        snapshot::read(lake, layout::STAGE, TABLE).await?.as_ref(),
        properties,
    )
    .await?;
    for chunk in products.chunks(64 * 1024) {
        let written = match products_batch(chunk) {
            Ok(batch) => writer.write(batch).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            // When the write failed first, its error is the cause.
            return Err(writer.abort().await.map_or(e, Error::from));
        }
    }
    let version = writer.commit().await?;
    Ok(LoadReport {
        rows,
        loaded: products.len() as u64,
        rejected,
        version,
        load_id,
        ignored_columns,
    })
}

/// A new, sortable load id: UTC time plus a random suffix.
fn new_load_id(now: DateTime<Utc>) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("load-{}-{}", now.format("%Y%m%dT%H%M%S%3fZ"), &suffix[..8])
}
