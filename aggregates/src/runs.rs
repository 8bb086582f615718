//! Run history: one record per refresh run, served as `system.refresh_runs`.
//!
//! `system.refresh_runs` is a Delta table. A run's row is committed when it starts (status
//! `running`) and replaced when it ends (`succeeded` or `failed`, with rows and the error): each
//! is one commit that swaps the rows of that `run_id`, so a reader sees the row before or after,
//! never a file half rewritten, and runs of other processes commit beside it.
//! A run whose process died stays `running` until the next scheduler start marks it
//! `interrupted`.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, AsArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::prelude::SessionContext;
use datafusion::prelude::{col, lit};
use shop_lake::delta::{CommitInfo, Mode};
use shop_lake::{Lake, layout};
use shop_types::tables::REFRESH_RUNS;

use crate::{Error, Result, from_days, to_days};

/// The schema the run history is served in.
pub const SCHEMA: &str = REFRESH_RUNS.schema;
/// The run history table.
pub const TABLE: &str = REFRESH_RUNS.name;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `shop-analytics refresh` or quickstart.
    Manual,
    /// The scheduler's cron expression fired.
    Schedule,
    /// The scheduler found the day without a successful run when it started.
    CatchUp,
    /// The scheduler retried a failed run.
    Retry,
}

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    /// Its process stopped before the run ended.
    Interrupted,
}

macro_rules! string_enum {
    ($ty:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($text => Ok(Self::$variant),)* other => Err(format!("unknown value {other}")) }
            }
        }
    };
}

string_enum!(Trigger { Manual => "manual", Schedule => "schedule", CatchUp => "catch_up", Retry => "retry" });
string_enum!(Status { Running => "running", Succeeded => "succeeded", Failed => "failed", Interrupted => "interrupted" });

/// One run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub trigger: Trigger,
    /// The day refreshed; `None` for a dimensions run.
    pub day: Option<NaiveDate>,
    /// The tables refreshed, comma-separated.
    pub tables: String,
    /// 1 for the first try of a day, then counting retries.
    pub attempt: u32,
    pub status: Status,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Rows written to the lake (`None` for dimensions, which are not written there).
    pub lake_rows: Option<u64>,
    /// Rows written to ClickHouse (`None` when ClickHouse is not configured).
    pub clickhouse_rows: Option<u64>,
    pub error: Option<String>,
    /// The process that ran it.
    pub process: String,
}

/// This process's id in the run history.
pub fn process_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// Schema of `system.refresh_runs`.
pub fn schema() -> SchemaRef {
    REFRESH_RUNS.schema_ref()
}

fn to_i64(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl RunRecord {
    /// A new run, `running` from now.
    pub fn start(trigger: Trigger, day: Option<NaiveDate>, tables: &[&str], attempt: u32) -> Self {
        Self {
            run_id: uuid::Uuid::new_v4().to_string(),
            trigger,
            day,
            tables: tables.join(","),
            attempt,
            status: Status::Running,
            started_at: Utc::now(),
            finished_at: None,
            lake_rows: None,
            clickhouse_rows: None,
            error: None,
            process: process_id().to_string(),
        }
    }

    fn to_batch(&self) -> RecordBatch {
        let ts = |t: Option<DateTime<Utc>>| {
            Arc::new(
                TimestampMicrosecondArray::from(vec![t.map(|t| t.timestamp_micros())])
                    .with_timezone("UTC"),
            )
        };
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![self.run_id.as_str()])),
                Arc::new(StringArray::from(vec![self.trigger.as_str()])),
                Arc::new(Date32Array::from(vec![self.day.map(to_days)])),
                Arc::new(StringArray::from(vec![self.tables.as_str()])),
                Arc::new(Int32Array::from(vec![
                    i32::try_from(self.attempt).unwrap_or(i32::MAX),
                ])),
                Arc::new(StringArray::from(vec![self.status.as_str()])),
                ts(Some(self.started_at)),
                ts(self.finished_at),
                Arc::new(Int64Array::from(vec![to_i64(self.lake_rows)])),
                Arc::new(Int64Array::from(vec![to_i64(self.clickhouse_rows)])),
                Arc::new(StringArray::from(vec![self.error.as_deref()])),
                Arc::new(StringArray::from(vec![self.process.as_str()])),
            ],
        )
        .expect("columns match the schema")
    }

    /// Commits the record, replacing the run's earlier row. A run that has just started has
    /// none, and is appended (a replace has to look for the rows it replaces).
    pub async fn write(&self, lake: &Lake) -> Result<()> {
        let mode = if self.status == Status::Running {
            Mode::Append
        } else {
            Mode::Replace(col("run_id").eq(lit(self.run_id.as_str())))
        };
        lake.write_delta(
            &layout::table_dir(SCHEMA, TABLE),
            &[],
            vec![self.to_batch()],
            mode,
            CommitInfo::default(),
        )
        .await?;
        Ok(())
    }

    /// Ends the run: `succeeded` without an error, `failed` with one.
    pub fn finish(&mut self, error: Option<String>) {
        self.finished_at = Some(Utc::now());
        self.status = if error.is_some() {
            Status::Failed
        } else {
            Status::Succeeded
        };
        self.error = error;
    }
}

/// Reads the run records that match `filter` (SQL over the table's columns), oldest first.
/// An empty history (no table yet) is no records.
pub async fn read(ctx: &SessionContext, filter: &str) -> Result<Vec<RunRecord>> {
    let wrap = |cause| Error::DataFusion {
        what: "reading system.refresh_runs".into(),
        cause,
    };
    let exists = ctx
        .catalog("shop")
        .and_then(|c| c.schema(SCHEMA))
        .is_some_and(|s| s.table_exist(TABLE));
    if !exists {
        return Ok(Vec::new());
    }
    let columns = schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("SELECT {columns} FROM shop.{SCHEMA}.{TABLE} WHERE {filter} ORDER BY started_at");
    let batches = match ctx.sql(&sql).await {
        Ok(frame) => frame.collect().await,
        Err(e) => Err(e),
    }
    .map_err(wrap)?;
    let mut records = Vec::new();
    for batch in &batches {
        records.extend(
            decode(batch).map_err(|e| Error::Invalid(format!("system.refresh_runs: {e}")))?,
        );
    }
    Ok(records)
}

fn decode(batch: &RecordBatch) -> Result<Vec<RunRecord>, String> {
    let string = |i: usize| -> Result<&StringArray, String> {
        batch
            .column(i)
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column {i} is not a string"))
    };
    let int64 = |i: usize| -> Result<&Int64Array, String> {
        batch
            .column(i)
            .as_primitive_opt()
            .ok_or_else(|| format!("column {i} is not an Int64"))
    };
    let ts = |i: usize| -> Result<&TimestampMicrosecondArray, String> {
        batch
            .column(i)
            .as_primitive_opt()
            .ok_or_else(|| format!("column {i} is not a timestamp"))
    };
    let (run_id, trigger, tables, status, error, process) = (
        string(0)?,
        string(1)?,
        string(3)?,
        string(5)?,
        string(10)?,
        string(11)?,
    );
    let day: &Date32Array = batch
        .column(2)
        .as_primitive_opt()
        .ok_or("day is not a date")?;
    let attempt: &Int32Array = batch
        .column(4)
        .as_primitive_opt()
        .ok_or("attempt is not an Int32")?;
    let (started, finished) = (ts(6)?, ts(7)?);
    let (lake_rows, clickhouse_rows) = (int64(8)?, int64(9)?);
    let time = |a: &TimestampMicrosecondArray, i: usize| {
        a.is_valid(i)
            .then(|| DateTime::from_timestamp_micros(a.value(i)))
            .flatten()
    };
    let count = |a: &Int64Array, i: usize| a.is_valid(i).then(|| a.value(i).max(0) as u64);
    (0..batch.num_rows())
        .map(|i| {
            Ok(RunRecord {
                run_id: run_id.value(i).to_string(),
                trigger: trigger.value(i).parse()?,
                day: day.is_valid(i).then(|| from_days(day.value(i))),
                tables: tables.value(i).to_string(),
                attempt: attempt.value(i).max(0) as u32,
                status: status.value(i).parse()?,
                started_at: time(started, i).ok_or("started_at is NULL")?,
                finished_at: time(finished, i),
                lake_rows: count(lake_rows, i),
                clickhouse_rows: count(clickhouse_rows, i),
                error: error.is_valid(i).then(|| error.value(i).to_string()),
                process: process.value(i).to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 9, 30).unwrap();
        let mut record = RunRecord::start(Trigger::CatchUp, Some(day), &["daily_sales"], 2);
        record.lake_rows = Some(7);
        record.finish(Some("ClickHouse down".into()));
        let decoded = decode(&record.to_batch()).unwrap();
        let mut expected = record.clone();
        // Stored at microsecond precision.
        expected.started_at =
            DateTime::from_timestamp_micros(record.started_at.timestamp_micros()).unwrap();
        expected.finished_at = record
            .finished_at
            .map(|t| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap());
        assert_eq!(decoded, vec![expected]);
        assert_eq!(decoded[0].status, Status::Failed);
    }
}
