//! The analytics layer: daily aggregates computed from the stage with DataFusion and written to
//! `analytics/<table>/dt=YYYY-MM-DD/data.parquet`.
//!
//! Each aggregate is a SQL file in `analytics/sql/` that groups by `dt`; a day is computed by
//! filtering that query on the day (DataFusion prunes the other days' partitions) and written as
//! one object, so replacing a day is a single atomic PUT and re-running a day gives the same file
//! content. The file keeps `dt` as its first column, so the table reads `dt` first.

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, Date32Array};
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;
use shop_lake::writer::write_file;
use shop_lake::{Lake, layout};

/// Errors of the analytics layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("aggregate {table} for {day}: {cause}")]
    Query {
        table: String,
        day: NaiveDate,
        cause: datafusion::error::DataFusionError,
    },
    #[error("listing the days of stage.purchases: {0}")]
    Days(datafusion::error::DataFusionError),
    #[error(transparent)]
    Lake(#[from] shop_lake::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A daily aggregate: a table in the `analytics` schema and the SQL that computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    pub table: &'static str,
    /// A query over the `shop` catalog with a `dt` column, grouped by `dt`.
    pub sql: &'static str,
}

/// `analytics.daily_sales(dt, orders, units, revenue, buyers)`.
pub const DAILY_SALES: Aggregate = Aggregate {
    table: "daily_sales",
    sql: include_str!("../sql/daily_sales.sql"),
};

/// Every aggregate, in refresh order.
pub const AGGREGATES: [Aggregate; 1] = [DAILY_SALES];

/// Computes `aggregate` for `day` and replaces that day's file. Returns the rows written; a day
/// without data removes the day's file.
pub async fn refresh_day(
    ctx: &SessionContext,
    lake: &Lake,
    aggregate: &Aggregate,
    day: NaiveDate,
) -> Result<u64> {
    let wrap = |source| Error::Query {
        table: aggregate.table.to_string(),
        day,
        cause: source,
    };
    let sql = format!(
        "SELECT * FROM ({}) AS agg WHERE dt = DATE '{}'",
        aggregate.sql.trim().trim_end_matches(';'),
        day.format("%Y-%m-%d")
    );
    let frame = ctx.sql(&sql).await.map_err(wrap)?;
    let schema = frame.schema().inner().clone();
    let batches = frame.collect().await.map_err(wrap)?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let path = layout::day_dir(layout::ANALYTICS, aggregate.table, day).join("data.parquet");
    if rows == 0 {
        match lake.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(shop_lake::Error::Store {
                    path: path.to_string(),
                    cause: e,
                }
                .into());
            }
        }
        return Ok(0);
    }
    // Aggregates are small: one object per day, written in one request, replaces the day atomically.
    Ok(write_file(lake, path, schema, &batches).await?.rows)
}

/// The days that have purchases in the stage, in order.
pub async fn purchase_days(ctx: &SessionContext) -> Result<Vec<NaiveDate>> {
    let batches = ctx
        .sql("SELECT DISTINCT dt FROM shop.stage.purchases ORDER BY dt")
        .await
        .map_err(Error::Days)?
        .collect()
        .await
        .map_err(Error::Days)?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let mut days = Vec::new();
    for batch in batches {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<Date32Array>()
            .ok_or_else(|| {
                Error::Days(datafusion::error::DataFusionError::Plan(
                    "stage.purchases.dt is not a date".into(),
                ))
            })?;
        for i in 0..column.len() {
            if column.is_valid(i) {
                days.push(epoch + chrono::Duration::days(i64::from(column.value(i))));
            }
        }
    }
    Ok(days)
}
