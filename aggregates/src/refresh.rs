//! Refreshing days of the aggregates (lake and ClickHouse) and the dimensions (ClickHouse),
//! with every run recorded in `system.refresh_runs`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use shop_lake::delta::{CommitInfo, Mode};
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions, layout, session};

use crate::clickhouse::ClickHouse;
use crate::runs::{RunRecord, Trigger};
use crate::{AGGREGATES, Aggregate, DIMENSIONS, Dimension, Error, Result};

/// Which tables a refresh covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub aggregates: Vec<Aggregate>,
    pub dimensions: Vec<Dimension>,
}

impl Selection {
    /// Every aggregate and every dimension.
    pub fn all() -> Self {
        Self {
            aggregates: AGGREGATES.to_vec(),
            dimensions: DIMENSIONS.to_vec(),
        }
    }

    /// The named tables (aggregates and dimensions); an unknown name is an error that lists the
    /// known ones.
    pub fn only(names: &[String]) -> Result<Self> {
        let mut selection = Self {
            aggregates: Vec::new(),
            dimensions: Vec::new(),
        };
        for name in names {
            if let Some(a) = AGGREGATES.iter().find(|a| a.table() == name) {
                selection.aggregates.push(*a);
            } else if let Some(d) = DIMENSIONS.iter().find(|d| d.table == name) {
                selection.dimensions.push(*d);
            } else {
                let known: Vec<&str> = AGGREGATES
                    .iter()
                    .map(|a| a.table())
                    .chain(DIMENSIONS.iter().map(|d| d.table))
                    .collect();
                return Err(Error::Invalid(format!(
                    "unknown table {name:?}; the tables are {}",
                    known.join(", ")
                )));
            }
        }
        Ok(selection)
    }

    pub fn aggregate_names(&self) -> Vec<&'static str> {
        self.aggregates.iter().map(|a| a.table()).collect()
    }

    pub fn dimension_names(&self) -> Vec<&'static str> {
        self.dimensions.iter().map(|d| d.table).collect()
    }
}

/// What a refresh wrote for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    /// Rows in the lake (`None` for dimensions, which live in the stage).
    pub lake_rows: Option<u64>,
    /// Rows in ClickHouse (`None` when ClickHouse is not configured).
    pub clickhouse_rows: Option<u64>,
}

/// Computes aggregates and pushes them; cheap to clone.
#[derive(Debug, Clone)]
pub struct Refresher {
    lake: Lake,
    catalog: Arc<LakeCatalog>,
    clickhouse: Option<ClickHouse>,
}

impl Refresher {
    pub fn new(lake: Lake, clickhouse: Option<ClickHouse>) -> Self {
        let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
        Self {
            lake,
            catalog,
            clickhouse,
        }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn clickhouse(&self) -> Option<&ClickHouse> {
        self.clickhouse.as_ref()
    }

    /// A session over the lake as it is now.
    pub async fn context(&self) -> Result<SessionContext> {
        self.catalog.refresh().await?;
        Ok(session::context(
            session::session_config(),
            session::runtime(&self.lake),
            &self.catalog,
        ))
    }

    /// Creates the ClickHouse database and every table that is missing.
    pub async fn prepare_clickhouse(&self) -> Result<()> {
        if let Some(ch) = &self.clickhouse {
            let ddl: Vec<&str> = AGGREGATES
                .iter()
                .map(|a| a.clickhouse_ddl)
                .chain(DIMENSIONS.iter().map(|d| d.clickhouse_ddl))
                .collect();
            ch.create_tables(&ddl).await?;
        }
        Ok(())
    }

    /// The rows of `aggregate` for `day`, sorted by its key.
    pub async fn compute(
        &self,
        ctx: &SessionContext,
        aggregate: &Aggregate,
        day: NaiveDate,
    ) -> Result<(arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
        let wrap = |source| Error::Query {
            table: aggregate.table().to_string(),
            day,
            cause: source,
        };
        let sql = format!(
            "SELECT * FROM ({}) AS agg WHERE dt = DATE '{}' ORDER BY {}",
            aggregate.sql.trim().trim_end_matches(';'),
            day.format("%Y-%m-%d"),
            aggregate.key().join(", ")
        );
        let frame = ctx.sql(&sql).await.map_err(wrap)?;
        let schema = frame.schema().inner().clone();
        let batches = frame.collect().await.map_err(wrap)?;
        Ok((schema, batches))
    }

    /// Refreshes `day` of the selected aggregates: replaces the day's rows in the lake's Delta
    /// table (one commit; a day without data removes them) and the day's ClickHouse partition.
    pub async fn refresh_day(
        &self,
        ctx: &SessionContext,
        day: NaiveDate,
        selection: &Selection,
    ) -> Result<Vec<TableReport>> {
        if !selection.aggregates.is_empty() {
            self.prepare_clickhouse().await?;
        }
        let mut reports = Vec::new();
        for aggregate in &selection.aggregates {
            let (schema, batches) = self.compute(ctx, aggregate, day).await?;
            let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            // One commit replaces the day: the rows of `dt = day` are swapped for the new ones
            // (none when the day has no data), and a re-run leaves the same rows.
            let batches = if batches.is_empty() {
                vec![RecordBatch::new_empty(schema)]
            } else {
                batches
            };
            self.lake
                .write_delta(
                    &layout::table_dir(layout::ANALYTICS, aggregate.table()),
                    &["dt"],
                    batches.clone(),
                    Mode::day("dt", day),
                    CommitInfo::default(),
                )
                .await?;
            let clickhouse_rows = match &self.clickhouse {
                Some(ch) => Some(ch.replace_day(aggregate.table(), day, &batches).await?),
                None => None,
            };
            reports.push(TableReport {
                table: aggregate.table(),
                lake_rows: Some(rows),
                clickhouse_rows,
            });
        }
        Ok(reports)
    }

    /// Copies the selected dimensions whole into ClickHouse. Without ClickHouse there is
    /// nothing to do; a dimension whose stage table does not exist yet is skipped.
    pub async fn refresh_dimensions(
        &self,
        ctx: &SessionContext,
        selection: &Selection,
    ) -> Result<Vec<TableReport>> {
        let Some(ch) = &self.clickhouse else {
            return Ok(Vec::new());
        };
        self.prepare_clickhouse().await?;
        let stage = ctx
            .catalog(layout::CATALOG)
            .and_then(|c| c.schema(layout::STAGE));
        let mut reports = Vec::new();
        for dimension in &selection.dimensions {
            if !stage
                .as_ref()
                .is_some_and(|s| s.table_exist(dimension.source))
            {
                tracing::warn!(
                    table = dimension.table,
                    "stage.{} does not exist yet; the dimension is not refreshed",
                    dimension.source
                );
                continue;
            }
            let wrap = |cause| Error::DataFusion {
                what: format!("dimension {}", dimension.table),
                cause,
            };
            let batches = ctx
                .sql(dimension.sql)
                .await
                .map_err(wrap)?
                .collect()
                .await
                .map_err(wrap)?;
            let rows = ch.replace_table(dimension.table, &batches).await?;
            reports.push(TableReport {
                table: dimension.table,
                lake_rows: None,
                clickhouse_rows: Some(rows),
            });
        }
        Ok(reports)
    }

    /// [`Refresher::refresh_day`] recorded as a run.
    pub async fn run_day(
        &self,
        ctx: &SessionContext,
        day: NaiveDate,
        selection: &Selection,
        trigger: Trigger,
        attempt: u32,
    ) -> (RunRecord, Result<Vec<TableReport>>) {
        let record = RunRecord::start(trigger, Some(day), &selection.aggregate_names(), attempt);
        self.recorded(record, self.refresh_day(ctx, day, selection))
            .await
    }

    /// [`Refresher::refresh_dimensions`] recorded as a run.
    pub async fn run_dimensions(
        &self,
        ctx: &SessionContext,
        selection: &Selection,
        trigger: Trigger,
        attempt: u32,
    ) -> (RunRecord, Result<Vec<TableReport>>) {
        let record = RunRecord::start(trigger, None, &selection.dimension_names(), attempt);
        self.recorded(record, self.refresh_dimensions(ctx, selection))
            .await
    }

    async fn recorded(
        &self,
        mut record: RunRecord,
        work: impl Future<Output = Result<Vec<TableReport>>>,
    ) -> (RunRecord, Result<Vec<TableReport>>) {
        if let Err(e) = record.write(&self.lake).await {
            return (record, Err(e));
        }
        let result = work.await;
        match &result {
            Ok(reports) => {
                let sum = |f: fn(&TableReport) -> Option<u64>| {
                    reports.iter().filter_map(f).reduce(|a, b| a + b)
                };
                record.lake_rows = sum(|r| r.lake_rows);
                record.clickhouse_rows = sum(|r| r.clickhouse_rows);
                record.finish(None);
            }
            Err(e) => record.finish(Some(e.to_string())),
        }
        if let Err(e) = record.write(&self.lake).await {
            tracing::error!(run_id = %record.run_id, cause = %e, "cannot record the end of the run");
            if result.is_ok() {
                return (record, Err(e));
            }
        }
        (record, result)
    }
}
