//! The analytics layer: daily aggregates computed from the stage with DataFusion, written to
//! `analytics/<table>/dt=YYYY-MM-DD/data.parquet` and pushed to ClickHouse; the customers,
//! products and sellers dimensions copied to ClickHouse; a scheduler with run history; and the
//! purchases stream from Kafka into ClickHouse.
//!
//! Each aggregate is a SQL file in `aggregates/sql/` that groups by `dt`; a day is computed by
//! filtering that query on the day (DataFusion prunes the other days' partitions), sorted by the
//! aggregate's key, and written as one object, so replacing a day is a single atomic PUT and
//! re-running a day writes the same bytes. Each ClickHouse table is a DDL file in
//! `aggregates/clickhouse/`.

pub mod clickhouse;
pub mod refresh;
pub mod rowbinary;
pub mod runs;
pub mod schedule;
pub mod stream;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, Date32Array};
use shop_types::{Table, tables};

pub use datafusion::prelude::SessionContext;
pub use refresh::{Refresher, Selection};

/// Errors of the analytics layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("aggregate {table} for {day}: {cause}")]
    Query {
        table: String,
        day: NaiveDate,
        cause: datafusion::error::DataFusionError,
    },
    #[error("{what}: {cause}")]
    DataFusion {
        what: String,
        cause: datafusion::error::DataFusionError,
    },
    #[error("listing the days of stage.purchases: {0}")]
    Days(datafusion::error::DataFusionError),
    #[error(transparent)]
    Lake(#[from] shop_lake::Error),
    #[error("ClickHouse at {url}: {what}: {cause}")]
    ClickHouse {
        url: String,
        what: String,
        cause: String,
    },
    #[error("ClickHouse table {table}: {message}")]
    ClickHouseTable { table: String, message: String },
    #[error("{0}")]
    ClickHouseSetup(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Kafka(#[from] shop_kafka::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A daily aggregate: a table in the `analytics` schema (and in ClickHouse), the SQL that
/// computes it and the ClickHouse DDL.
#[derive(Debug, Clone, Copy)]
pub struct Aggregate {
    /// Its declaration: its name, and `dt` then the columns that make a row unique within a day.
    pub declared: &'static Table,
    /// A query over the `shop` catalog with a `dt` column, grouped by `dt`.
    pub sql: &'static str,
    /// `CREATE TABLE IF NOT EXISTS {database}.<table> …`.
    pub clickhouse_ddl: &'static str,
}

/// Aggregates are the same when they name the same table.
impl PartialEq for Aggregate {
    fn eq(&self, other: &Self) -> bool {
        self.table() == other.table()
    }
}

impl Eq for Aggregate {}

impl Aggregate {
    const fn new(
        declared: &'static Table,
        sql: &'static str,
        clickhouse_ddl: &'static str,
    ) -> Self {
        Self {
            declared,
            sql,
            clickhouse_ddl,
        }
    }

    /// Its table in the `analytics` schema and in ClickHouse.
    pub fn table(&self) -> &'static str {
        self.declared.name
    }

    /// The columns that make a row unique within a day; rows are written in this order.
    pub fn key(&self) -> &'static [&'static str] {
        // Every aggregate's primary key starts with `dt` (checked in `shop-types`).
        &self.declared.primary_key[1..]
    }
}

/// `analytics.daily_sales(dt, currency, orders, units, revenue, buyers)`.
pub const DAILY_SALES: Aggregate = Aggregate::new(
    &tables::DAILY_SALES,
    include_str!("../sql/daily_sales.sql"),
    include_str!("../clickhouse/daily_sales.sql"),
);

/// `analytics.daily_product_sales(dt, product_id, currency, orders, units, revenue, buyers)`.
pub const DAILY_PRODUCT_SALES: Aggregate = Aggregate::new(
    &tables::DAILY_PRODUCT_SALES,
    include_str!("../sql/daily_product_sales.sql"),
    include_str!("../clickhouse/daily_product_sales.sql"),
);

/// `analytics.daily_seller_sales(dt, seller_id, currency, orders, units, revenue, buyers,
/// products)`.
pub const DAILY_SELLER_SALES: Aggregate = Aggregate::new(
    &tables::DAILY_SELLER_SALES,
    include_str!("../sql/daily_seller_sales.sql"),
    include_str!("../clickhouse/daily_seller_sales.sql"),
);

/// `analytics.daily_category_sales(dt, category, currency, orders, units, revenue, buyers)`.
pub const DAILY_CATEGORY_SALES: Aggregate = Aggregate::new(
    &tables::DAILY_CATEGORY_SALES,
    include_str!("../sql/daily_category_sales.sql"),
    include_str!("../clickhouse/daily_category_sales.sql"),
);

/// Every aggregate, in refresh order.
pub const AGGREGATES: [Aggregate; 4] = [
    DAILY_SALES,
    DAILY_PRODUCT_SALES,
    DAILY_SELLER_SALES,
    DAILY_CATEGORY_SALES,
];

/// A dimension copied whole from the stage into a ClickHouse table of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimension {
    pub table: &'static str,
    /// The stage table it is read from (refreshing is skipped while that table does not exist).
    pub source: &'static str,
    pub sql: &'static str,
    pub clickhouse_ddl: &'static str,
}

/// Every dimension.
pub const DIMENSIONS: [Dimension; 3] = [
    Dimension {
        table: tables::CUSTOMERS.name,
        source: tables::CUSTOMERS.name,
        sql: include_str!("../sql/dim_customers.sql"),
        clickhouse_ddl: include_str!("../clickhouse/customers.sql"),
    },
    Dimension {
        table: tables::PRODUCTS.name,
        source: tables::PRODUCTS.name,
        sql: include_str!("../sql/dim_products.sql"),
        clickhouse_ddl: include_str!("../clickhouse/products.sql"),
    },
    Dimension {
        table: tables::SELLERS.name,
        source: tables::SELLERS.name,
        sql: include_str!("../sql/dim_sellers.sql"),
        clickhouse_ddl: include_str!("../clickhouse/sellers.sql"),
    },
];

/// The days that have purchases in the stage, in order.
pub async fn purchase_days(ctx: &SessionContext) -> Result<Vec<NaiveDate>> {
    let batches = ctx
        .sql("SELECT DISTINCT dt FROM shop.stage.purchases ORDER BY dt")
        .await
        .map_err(Error::Days)?
        .collect()
        .await
        .map_err(Error::Days)?;
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
                days.push(from_days(column.value(i)));
            }
        }
    }
    Ok(days)
}

/// Days since 1970-01-01, as a `Date32` stores a day.
pub fn to_days(day: NaiveDate) -> i32 {
    (day - from_days(0)).num_days() as i32
}

/// A `Date32` value as a date.
pub fn from_days(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
        + chrono::Duration::days(i64::from(days))
}
