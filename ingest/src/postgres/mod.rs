//! PostgreSQL → lake: tables exported to `stage.<table>` as snapshot tables.
//!
//! An export reads the table inside one `REPEATABLE READ, READ ONLY` transaction with
//! `COPY (SELECT …) TO STDOUT (FORMAT binary)`, decodes the rows straight into Arrow batches
//! ([`copy`]), and streams them into a new snapshot folder of the table while the next batch is
//! decoded (two tasks, so decoding and Parquet encoding use both cores). Nothing is visible until
//! the manifest is switched; an export that fails or is killed leaves the previous snapshot live.
//!
//! Incremental exports read only rows whose `updated_at` moved past the watermark kept in the
//! manifest (minus a look-back for transactions that committed late), plus the table's primary
//! keys; the new snapshot is those rows plus the previous snapshot's rows that were neither
//! changed nor deleted. So the stage table always holds exactly one, the latest, version of each
//! row, and hard deletes disappear at the next run. See `docs/POSTGRES.md`.

pub mod copy;
pub mod generate;
pub mod types;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use arrow::datatypes::DataType;
use futures::{StreamExt, TryStreamExt};
use shop_lake::snapshot::{self, Snapshot, SnapshotWriter};
use shop_lake::{Lake, layout};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};

use self::copy::CopyDecoder;
use self::types::{PgTable, quote_ident};

/// The schema migrations of the shop's operational database (`ingest/migrations/`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors of PostgreSQL exports. Each names the table (and column) it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL at {target}: {cause}")]
    Connect { target: String, cause: sqlx::Error },
    #[error("invalid PostgreSQL URL: {cause}")]
    Url { cause: sqlx::Error },
    #[error("PostgreSQL failed while {what} for {table}: {cause}")]
    Query {
        table: String,
        what: &'static str,
        cause: sqlx::Error,
    },
    #[error("the table {table} does not exist in PostgreSQL (or is not on the search_path)")]
    NoSuchTable { table: String },
    #[error("{table}.{column} has type {declared}, which cannot be exported: {reason}")]
    UnsupportedType {
        table: String,
        column: String,
        declared: String,
        reason: String,
    },
    #[error("{table}.{column} ({declared}), row {row}: {reason}")]
    Value {
        table: String,
        column: String,
        declared: String,
        row: u64,
        reason: String,
    },
    #[error("unexpected COPY data for {table}: {reason}")]
    Protocol { table: String, reason: String },
    #[error("building Arrow data for {table}: {cause}")]
    Arrow {
        table: String,
        cause: arrow::error::ArrowError,
    },
    #[error("reading the previous snapshot of {table}: {cause}")]
    PreviousSnapshot {
        table: String,
        cause: parquet::errors::ParquetError,
    },
    #[error("an incremental export of {table} is not possible: {reason}; use --mode snapshot")]
    Incremental { table: String, reason: String },
    #[error("{table}: {name:?} is not a valid lake table name ([a-z][a-z0-9_]*)")]
    TableName { table: String, name: String },
    #[error(transparent)]
    Lake(#[from] shop_lake::Error),
    #[error("generating rows: {cause}")]
    Generate { cause: sqlx::Error },
    #[error("applying the schema migrations: {cause}")]
    Migrate { cause: sqlx::migrate::MigrateError },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    fn query(table: &str, what: &'static str, cause: sqlx::Error) -> Self {
        Self::Query {
            table: table.to_string(),
            what,
            cause,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use sqlx::postgres::PgPool;

/// The tables `ingest postgres` exports when none are named.
pub const DEFAULT_TABLES: [&str; 2] = ["customers", "sellers"];

/// Full copy or changes since the last export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Snapshot,
    Incremental,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Incremental => "incremental",
        }
    }
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub mode: Mode,
    /// Rows per Arrow batch handed to the Parquet writer.
    pub batch_rows: usize,
    /// Target size of the snapshot's Parquet files.
    pub target_file_bytes: u64,
    /// The column that every change bumps.
    pub updated_column: String,
    /// How far before the watermark an incremental run looks again, for transactions that
    /// committed after a newer row was already exported.
    pub lookback: Duration,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Snapshot,
            batch_rows: 64 * 1024,
            target_file_bytes: snapshot::TARGET_FILE_BYTES,
            updated_column: "updated_at".into(),
            lookback: Duration::from_secs(300),
        }
    }
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub table: String,
    /// The lake table: `stage.<lake_table>`.
    pub lake_table: String,
    /// The mode that ran: an incremental request without a usable previous snapshot runs as a
    /// snapshot.
    pub mode: Mode,
    /// Rows read from PostgreSQL (all rows, or the changed ones).
    pub rows_read: u64,
    /// Rows in the published snapshot.
    pub rows_total: u64,
    /// Rows of the previous snapshot removed because they no longer exist in PostgreSQL.
    pub rows_deleted: u64,
    /// The Delta version committed.
    pub version: u64,
    pub watermark: Option<String>,
    pub elapsed: Duration,
}

/// `postgres://user:secret@host/db` → `host:port/db`, for messages without the password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Connects, failing within `timeout` with the server named when it cannot be reached.
pub async fn connect(url: &str, timeout: Duration) -> Result<PgPool> {
    connect_pool(url, timeout, 2).await
}

/// [`connect`] with a pool of up to `max_connections`.
pub async fn connect_pool(url: &str, timeout: Duration, max_connections: u32) -> Result<PgPool> {
    let options: PgConnectOptions = url.parse().map_err(|cause| Error::Url { cause })?;
    let options = options.application_name("shop-analytics");
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .map_err(|cause| Error::Connect {
            target: redact(url),
            cause,
        })
}

/// Applies the shop's schema migrations.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|cause| Error::Migrate { cause })
}

/// The lake name of a PostgreSQL table: its unqualified name.
pub fn lake_table_name(table: &str) -> Result<String> {
    let name = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
    if layout::is_table_name(name) {
        Ok(name.to_string())
    } else {
        Err(Error::TableName {
            table: table.to_string(),
            name: name.to_string(),
        })
    }
}

/// Properties an export keeps in its commit's metadata.
const PROP_SOURCE: &str = "source";
const PROP_COLUMNS: &str = "columns";
const PROP_WATERMARK: &str = "watermark";
const PROP_MODE: &str = "mode";
const PROP_UPDATED_COLUMN: &str = "updated_column";

/// A fingerprint of the exported columns: an incremental run needs the previous snapshot to have
/// the same ones.
fn columns_fingerprint(table: &PgTable) -> String {
    table
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                c.name,
                c.declared,
                if c.nullable { "" } else { "!" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Exports one table into `stage.<name>`. `progress` counts rows as they are written.
pub async fn export_table(
    pool: &PgPool,
    lake: &Lake,
    table: &str,
    options: &ExportOptions,
    progress: &AtomicU64,
) -> Result<ExportReport> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|cause| Error::query(table, "opening a connection", cause))?;
    let result = export_on(&mut conn, lake, table, options, progress).await;
    if result.is_err() {
        // A failure in the middle of a COPY leaves the connection mid-protocol: it must not go
        // back to the pool, where the next table's export would get it.
        if let Err(e) = conn.close().await {
            tracing::debug!(table, cause = %e, "closing the connection of a failed export");
        }
    }
    result
}

async fn export_on(
    conn: &mut PgConnection,
    lake: &Lake,
    table: &str,
    options: &ExportOptions,
    progress: &AtomicU64,
) -> Result<ExportReport> {
    let started = Instant::now();
    let lake_table = lake_table_name(table)?;
    let mut tx = conn
        .begin()
        .await
        .map_err(|cause| Error::query(table, "starting the transaction", cause))?;
    tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(|cause| Error::query(table, "starting the transaction", cause))?;
    let source = types::describe(&mut tx, table).await?;
    let previous = snapshot::read(lake, layout::STAGE, &lake_table).await?;
    let fingerprint = columns_fingerprint(&source);
    let updated = source
        .column(&options.updated_column)
        .filter(|c| c.kind.is_timestamp());

    let plan = match options.mode {
        Mode::Snapshot => Plan::Full,
        Mode::Incremental => incremental_plan(&source, options, previous.as_ref(), &fingerprint)?,
    };
    let watermark = match updated {
        Some(column) => {
            // Capped at the transaction's start, so that a row with a future (or infinite)
            // updated_at cannot move the watermark past changes still to come.
            let cast = if column.kind == types::PgKind::TimestampTz {
                "timestamptz"
            } else {
                "timestamp"
            };
            let sql = format!(
                "SELECT LEAST(max({}), transaction_timestamp()::{cast})::text FROM {}",
                quote_ident(&column.name),
                source.qualified
            );
            sqlx::query_scalar::<_, Option<String>>(&sql)
                .fetch_one(&mut *tx)
                .await
                .map_err(|cause| Error::query(table, "reading the watermark", cause))?
        }
        None => None,
    };

    let properties = |plan: &Plan| {
        let mode = match plan {
            Plan::Full => Mode::Snapshot,
            Plan::Changes { .. } => Mode::Incremental,
        };
        let mut properties = BTreeMap::from([
            (
                PROP_SOURCE.to_string(),
                format!("postgres:{}", source.qualified),
            ),
            (PROP_COLUMNS.to_string(), fingerprint.clone()),
            (PROP_MODE.to_string(), mode.as_str().to_string()),
        ]);
        if let Some(w) = &watermark {
            properties.insert(PROP_WATERMARK.to_string(), w.clone());
            properties.insert(
                PROP_UPDATED_COLUMN.to_string(),
                options.updated_column.clone(),
            );
        }
        (mode, properties)
    };

    let mut plan = plan;
    let (writer, counts, mode) = loop {
        // Based on the version read above, which the merge reads from: a writer that
        // committed in between makes this export fail instead of being overwritten.
        let (mode, properties) = properties(&plan);
        let writer = SnapshotWriter::begin_sized(
            lake,
            layout::STAGE,
            &lake_table,
            source.arrow_schema(),
            previous.as_ref(),
            properties,
            options.target_file_bytes,
        )
        .await?;
        let filled = fill(&mut tx, lake, &source, options, &plan, &writer, progress).await;
        match filled {
            Ok(counts)
                if counts
                    .live
                    .is_none_or(|live| live == counts.read + counts.kept) =>
            {
                break (writer, counts, mode);
            }
            Ok(counts) => {
                // Rows whose updated_at is older than the watermark appeared (inserted with an
                // old timestamp, or committed later than the look-back): only a full copy has
                // them. Same transaction, so the same database state.
                tracing::warn!(
                    table,
                    live = counts.live,
                    merged = counts.read + counts.kept,
                    "the incremental merge misses rows older than the watermark; exporting a full snapshot instead"
                );
                if let Some(failed) = writer.abort().await {
                    return Err(failed.into());
                }
                progress.store(0, Ordering::Relaxed);
                plan = Plan::Full;
            }
            Err(e) => {
                // When the write failed first, its error is the cause ("the write stopped" is
                // only what the sender saw).
                return Err(writer.abort().await.map_or(e, Error::from));
            }
        }
    };
    if let Err(cause) = tx.commit().await {
        writer.abort().await;
        return Err(Error::query(table, "ending the transaction", cause));
    }
    let rows_total = writer.rows();
    let version = writer.commit().await?;
    let report = ExportReport {
        table: table.to_string(),
        lake_table,
        mode,
        rows_read: counts.read,
        rows_total,
        rows_deleted: counts.deleted,
        version,
        watermark,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        table = %report.table,
        lake_table = %format!("stage.{}", report.lake_table),
        mode = report.mode.as_str(),
        rows_read = report.rows_read,
        rows_total = report.rows_total,
        rows_deleted = report.rows_deleted,
        version = report.version,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "exported"
    );
    Ok(report)
}

/// What an export reads.
enum Plan {
    /// Every row.
    Full,
    /// Rows changed since `since`, merged with the previous snapshot.
    Changes {
        since: String,
        previous: Snapshot,
        key: String,
        updated: String,
        updated_type: &'static str,
    },
}

fn incremental_plan(
    source: &PgTable,
    options: &ExportOptions,
    previous: Option<&Snapshot>,
    fingerprint: &str,
) -> Result<Plan> {
    let refuse = |reason: String| Error::Incremental {
        table: source.name.clone(),
        reason,
    };
    let key = source
        .primary_key
        .as_ref()
        .and_then(|k| source.column(k))
        .filter(|c| c.kind.is_integer())
        .ok_or_else(|| refuse("it needs a single-column integer primary key".into()))?;
    let updated = source
        .column(&options.updated_column)
        .ok_or_else(|| refuse(format!("it has no column {:?}", options.updated_column)))?;
    if !updated.kind.is_timestamp() {
        return Err(refuse(format!(
            "{} is {}, not a timestamp",
            updated.name, updated.declared
        )));
    }
    if updated.nullable {
        return Err(refuse(format!(
            "{} is nullable, and rows where it is NULL would never be exported; declare it NOT NULL",
            updated.name
        )));
    }
    let expected_source = format!("postgres:{}", source.qualified);
    let full = |why: &str| {
        tracing::info!(table = %source.name, "exporting a full snapshot: {why}");
        Ok(Plan::Full)
    };
    let Some(previous) = previous else {
        return full("the lake has no snapshot yet");
    };
    if previous.properties.get(PROP_SOURCE) != Some(&expected_source) {
        return full("the lake's snapshot did not come from this table");
    }
    if previous.properties.get(PROP_COLUMNS).map(String::as_str) != Some(fingerprint) {
        return full("the table's columns changed since the last export");
    }
    let Some(since) = previous.properties.get(PROP_WATERMARK) else {
        return full("the previous export had no rows, so no watermark");
    };
    if previous.properties.get(PROP_UPDATED_COLUMN) != Some(&options.updated_column) {
        return full("the previous watermark was taken from another column");
    }
    Ok(Plan::Changes {
        since: since.clone(),
        previous: previous.clone(),
        key: key.name.clone(),
        updated: updated.name.clone(),
        updated_type: if updated.kind == types::PgKind::TimestampTz {
            "timestamptz"
        } else {
            "timestamp"
        },
    })
}

#[derive(Debug, Default)]
struct Counts {
    read: u64,
    /// Rows of the previous snapshot carried over.
    kept: u64,
    deleted: u64,
    /// Rows in the table (incremental runs only).
    live: Option<u64>,
}

/// Streams the plan's rows into the sink.
async fn fill(
    conn: &mut PgConnection,
    lake: &Lake,
    source: &PgTable,
    options: &ExportOptions,
    plan: &Plan,
    sink: &SnapshotWriter,
    progress: &AtomicU64,
) -> Result<Counts> {
    let select = format!("SELECT {} FROM {}", source.select_list(), source.qualified);
    let Plan::Changes {
        since,
        previous,
        key,
        updated,
        updated_type,
    } = plan
    else {
        let read = copy_into(conn, source, &select, options.batch_rows, sink, progress).await?;
        return Ok(Counts {
            read,
            ..Counts::default()
        });
    };
    let filter = format!(
        " WHERE {} > '{}'::{updated_type} - interval '{} seconds'",
        quote_ident(updated),
        since.replace('\'', "''"),
        options.lookback.as_secs()
    );
    let key_sql = format!(
        "SELECT {}::int8 FROM {}",
        quote_ident(key),
        source.qualified
    );
    let live = key_set(conn, &source.name, &key_sql).await?;
    let changed = key_set(conn, &source.name, &format!("{key_sql}{filter}")).await?;
    let read = copy_into(
        conn,
        source,
        &format!("{select}{filter}"),
        options.batch_rows,
        sink,
        progress,
    )
    .await?;
    let (kept, deleted) =
        merge_previous(lake, source, previous, key, &live, &changed, sink, progress).await?;
    Ok(Counts {
        read,
        kept,
        deleted,
        live: Some(live.len() as u64),
    })
}

async fn key_set(conn: &mut PgConnection, table: &str, sql: &str) -> Result<HashSet<i64>> {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch(&mut *conn)
        .try_collect()
        .await
        .map_err(|cause| Error::query(table, "reading the primary keys", cause))
}

/// Runs a binary COPY of `select` and sends its rows to the sink; returns the rows read.
async fn copy_into(
    conn: &mut PgConnection,
    source: &PgTable,
    select: &str,
    batch_rows: usize,
    sink: &SnapshotWriter,
    progress: &AtomicU64,
) -> Result<u64> {
    let mut decoder = CopyDecoder::new(source, batch_rows);
    let sql = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
    let mut stream = conn
        .copy_out_raw(&sql)
        .await
        .map_err(|cause| Error::query(&source.name, "starting COPY", cause))?;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|cause| Error::query(&source.name, "reading COPY data", cause))?
    {
        for batch in decoder.feed(&chunk)? {
            progress.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            sink.write(batch).await?;
        }
    }
    drop(stream);
    let rows = decoder.rows();
    if let Some(batch) = decoder.finish()? {
        progress.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        sink.write(batch).await?;
    }
    Ok(rows)
}

/// Sends the previous snapshot's rows that still exist and did not change; returns how many
/// rows were kept, and how many were dropped because their key is gone from PostgreSQL.
#[allow(clippy::too_many_arguments)]
async fn merge_previous(
    lake: &Lake,
    source: &PgTable,
    previous: &Snapshot,
    key: &str,
    live: &HashSet<i64>,
    changed: &HashSet<i64>,
    sink: &SnapshotWriter,
    progress: &AtomicU64,
) -> Result<(u64, u64)> {
    let parquet_error = |cause| Error::PreviousSnapshot {
        table: source.name.clone(),
        cause,
    };
    let (mut kept_rows, mut deleted) = (0, 0);
    for file in &previous.files {
        let builder = shop_lake::reader::open_parquet(lake, file.path.clone(), file.size)
            .await
            .map_err(parquet_error)?;
        let key_index = builder
            .schema()
            .index_of(key)
            .map_err(|cause| Error::Arrow {
                table: source.name.clone(),
                cause,
            })?;
        let mut batches = builder
            .with_batch_size(64 * 1024)
            .build()
            .map_err(parquet_error)?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(parquet_error)?;
            let keys = arrow::compute::cast(batch.column(key_index), &DataType::Int64).map_err(
                |cause| Error::Arrow {
                    table: source.name.clone(),
                    cause,
                },
            )?;
            let keys = keys
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("cast to Int64 gives an Int64Array");
            let keep: BooleanArray = keys
                .iter()
                .map(|k| Some(k.is_some_and(|k| live.contains(&k) && !changed.contains(&k))))
                .collect();
            deleted += keys
                .iter()
                .filter(|k| k.is_some_and(|k| !live.contains(&k)))
                .count() as u64;
            let kept = arrow::compute::filter_record_batch(&batch, &keep).map_err(|cause| {
                Error::Arrow {
                    table: source.name.clone(),
                    cause,
                }
            })?;
            if kept.num_rows() > 0 {
                kept_rows += kept.num_rows() as u64;
                progress.fetch_add(kept.num_rows() as u64, Ordering::Relaxed);
                sink.write(with_schema(kept, source)?).await?;
            }
        }
    }
    Ok((kept_rows, deleted))
}

/// The batch with the export's schema (files read back carry their own field metadata).
fn with_schema(batch: RecordBatch, source: &PgTable) -> Result<RecordBatch> {
    RecordBatch::try_new(source.arrow_schema(), batch.columns().to_vec()).map_err(|cause| {
        Error::Arrow {
            table: source.name.clone(),
            cause,
        }
    })
}
