//! ClickHouse as a destination: tables created from the DDL files in `aggregates/clickhouse/`,
//! batches inserted as `RowBinary` with the `clickhouse` crate, days and whole tables replaced
//! atomically for readers.
//!
//! Everything here works on Debian's ClickHouse 18.16 as well as on current releases: no
//! server-side parameters, no `RowBinaryWithNamesAndTypes`, no `EXCHANGE TABLES`.
//!
//! - A day of an aggregate is loaded into `<table>__load` and moved in with
//!   `ALTER TABLE … REPLACE PARTITION`, so readers see the old day or the new one, and a run that
//!   dies midway leaves the table as it was.
//! - A dimension is loaded into `<table>__load` and swapped in with one `RENAME TABLE`.

use std::future::Future;
use std::time::Duration;

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use clickhouse::Client;
use serde::Deserialize;

use crate::rowbinary::{self, ChType, Column};
use crate::{Error, Result};

/// Where ClickHouse is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub user: String,
    pub password: Option<String>,
    /// Database of every table; created if missing.
    pub database: String,
    /// Longest a single statement or insert may take.
    pub timeout: Duration,
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: "default".into(),
            password: None,
            database: "shop".into(),
            timeout: Duration::from_secs(300),
        }
    }
}

/// A ClickHouse connection (HTTP, pooled).
#[derive(Clone)]
pub struct ClickHouse {
    client: Client,
    config: ClickHouseConfig,
    /// `config.url` without a `user:password@` part: errors end up in logs and in
    /// system.refresh_runs, which every Flight SQL user can read.
    display_url: String,
}

/// Bytes sent per insert chunk.
const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ColumnRow {
    name: String,
    r#type: String,
    default_kind: String,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("url", &self.display_url)
            .field("database", &self.config.database)
            .finish()
    }
}

/// `scheme://user:password@host/path?query` as `scheme://host/path`: credentials can be in the
/// user info and in the query (`?user=…&password=…`).
fn without_credentials(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

impl ClickHouse {
    pub fn new(config: ClickHouseConfig) -> Result<Self> {
        if !is_identifier(&config.database) {
            return Err(Error::ClickHouseSetup(format!(
                "invalid ClickHouse database name {:?}: use letters, digits and _",
                config.database
            )));
        }
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(Error::ClickHouseSetup(format!(
                "the ClickHouse URL {} must start with http:// or https:// (the HTTP interface, \
                 port 8123 by default)",
                without_credentials(&config.url)
            )));
        }
        let mut client = Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_compression(clickhouse::Compression::Lz4)
            // RowBinary without names and types: ClickHouse 18.16 knows no other binary format.
            .with_validation(false);
        if let Some(password) = &config.password {
            client = client.with_password(password);
        }
        Ok(Self {
            client,
            display_url: without_credentials(&config.url),
            config,
        })
    }

    /// The URL without credentials, for messages.
    pub fn url(&self) -> &str {
        &self.display_url
    }

    pub fn database(&self) -> &str {
        &self.config.database
    }

    /// The underlying client, for queries of its own.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `database.table`.
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{table}", self.config.database)
    }

    pub(crate) async fn call<T>(
        &self,
        what: impl Into<String>,
        request: impl Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T> {
        let what = what.into();
        match tokio::time::timeout(self.config.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(cause)) => Err(Error::ClickHouse {
                url: self.display_url.clone(),
                what,
                cause: cause.to_string(),
            }),
            Err(_) => Err(Error::ClickHouse {
                url: self.display_url.clone(),
                what,
                cause: format!("no answer within {:?}", self.config.timeout),
            }),
        }
    }

    /// Runs one statement that returns nothing.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        let what = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
        self.call(what, self.client.query(sql).execute()).await
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<()> {
        self.call("SELECT 1", self.client.query("SELECT 1").fetch_one::<u8>())
            .await
            .map(drop)
    }

    /// Creates the database and runs the `CREATE TABLE IF NOT EXISTS` statements `ddl`.
    pub async fn create_tables(&self, ddl: &[&str]) -> Result<()> {
        self.execute(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            self.config.database
        ))
        .await?;
        for statement in ddl {
            self.execute(&statement.replace("{database}", &self.config.database))
                .await?;
        }
        Ok(())
    }

    /// The columns an insert into `table` writes: all but MATERIALIZED and ALIAS columns, each
    /// with whether it has a default.
    async fn columns(&self, table: &str) -> Result<Vec<(Column, bool)>> {
        let rows: Vec<ColumnRow> = self
            .call(
                format!("reading the columns of {}", self.qualified(table)),
                self.client
                    .query(
                        "SELECT name, type, default_kind FROM system.columns \
                         WHERE database = ? AND table = ?",
                    )
                    .bind(&self.config.database)
                    .bind(table)
                    .fetch_all(),
            )
            .await?;
        if rows.is_empty() {
            return Err(self.table_error(table, "the table does not exist".into()));
        }
        rows.into_iter()
            .filter(|r| r.default_kind != "MATERIALIZED" && r.default_kind != "ALIAS")
            .map(|r| {
                let ty = ChType::parse(&r.r#type)
                    .map_err(|e| self.table_error(table, format!("column {}: {e}", r.name)))?;
                Ok((Column { name: r.name, ty }, !r.default_kind.is_empty()))
            })
            .collect()
    }

    fn table_error(&self, table: &str, message: String) -> Error {
        Error::ClickHouseTable {
            table: self.qualified(table),
            message,
        }
    }

    /// Inserts `batches` into `table` in one INSERT (atomic in ClickHouse for up to a million
    /// rows in one partition). Every column of the batches must exist in the table; table
    /// columns with a default may be missing from the batches. Returns the rows inserted.
    pub async fn insert(&self, table: &str, batches: &[RecordBatch]) -> Result<u64> {
        let Some(first) = batches.first() else {
            return Ok(0);
        };
        let table_columns = self.columns(table).await?;
        let schema = first.schema();
        for field in schema.fields() {
            if !table_columns.iter().any(|(c, _)| &c.name == field.name()) {
                return Err(self.table_error(
                    table,
                    format!(
                        "has no column {} that the data has; the table was created for another \
                         version: alter it, or drop it to have it created again",
                        field.name()
                    ),
                ));
            }
        }
        let mut columns = Vec::new();
        for (column, has_default) in table_columns {
            if schema.field_with_name(&column.name).is_ok() {
                columns.push(column);
            } else if !has_default {
                return Err(self.table_error(
                    table,
                    format!(
                        "column {} has no default and the data has no such column",
                        column.name
                    ),
                ));
            }
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(0);
        }
        let names = columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {} ({names}) FORMAT RowBinary",
            self.qualified(table)
        );
        let what = format!("inserting {rows} rows into {}", self.qualified(table));
        let mut insert = self.client.insert_formatted_with(sql);
        let mut buffer = Vec::with_capacity(CHUNK_BYTES);
        for batch in batches {
            // Encode in slices so that one chunk stays near CHUNK_BYTES.
            let mut offset = 0;
            while offset < batch.num_rows() {
                let len = (batch.num_rows() - offset).min(8192);
                rowbinary::encode(&batch.slice(offset, len), &columns, &mut buffer).map_err(
                    |cause| Error::ClickHouseTable {
                        table: self.qualified(table),
                        message: cause.to_string(),
                    },
                )?;
                offset += len;
                if buffer.len() >= CHUNK_BYTES {
                    let chunk = Bytes::from(std::mem::take(&mut buffer));
                    self.call(what.clone(), insert.send(chunk)).await?;
                }
            }
        }
        if !buffer.is_empty() {
            self.call(what.clone(), insert.send(Bytes::from(buffer)))
                .await?;
        }
        self.call(what, insert.end()).await?;
        Ok(rows as u64)
    }

    /// Replaces the `day` partition of `table` (partitioned by its `dt` Date column) with
    /// `batches`: loads them into a load table of this call's own, then `REPLACE PARTITION`. An
    /// empty `batches` drops the day. Two refreshes of one day at once cannot mix their rows: the
    /// last `REPLACE` wins.
    pub async fn replace_day(
        &self,
        table: &str,
        day: NaiveDate,
        batches: &[RecordBatch],
    ) -> Result<u64> {
        let target = self.qualified(table);
        let load_name = load_table(table, "load");
        let load = self.qualified(&load_name);
        let partition = format!("'{}'", day.format("%Y-%m-%d"));
        self.execute(&format!("CREATE TABLE {load} AS {target}"))
            .await?;
        let replaced: Result<u64> = async {
            let rows = self.insert(&load_name, batches).await?;
            if rows == 0 {
                self.execute(&format!("ALTER TABLE {target} DROP PARTITION {partition}"))
                    .await?;
            } else {
                self.execute(&format!(
                    "ALTER TABLE {target} REPLACE PARTITION {partition} FROM {load}"
                ))
                .await?;
            }
            Ok(rows)
        }
        .await;
        let dropped = self.execute(&format!("DROP TABLE IF EXISTS {load}")).await;
        let rows = replaced?;
        dropped?;
        Ok(rows)
    }

    /// Replaces the whole content of `table` with `batches`: loads a load table of this
    /// call's own and swaps it in with one `RENAME TABLE`.
    pub async fn replace_table(&self, table: &str, batches: &[RecordBatch]) -> Result<u64> {
        let target = self.qualified(table);
        let load_name = load_table(table, "load");
        let load = self.qualified(&load_name);
        let old = self.qualified(&load_table(table, "old"));
        self.execute(&format!("CREATE TABLE {load} AS {target}"))
            .await?;
        let swapped: Result<u64> = async {
            let rows = self.insert(&load_name, batches).await?;
            self.execute(&format!(
                "RENAME TABLE {target} TO {old}, {load} TO {target}"
            ))
            .await?;
            self.execute(&format!("DROP TABLE {old}")).await?;
            Ok(rows)
        }
        .await;
        if swapped.is_err() {
            let _ = self.execute(&format!("DROP TABLE IF EXISTS {load}")).await;
        }
        swapped
    }
}

/// `<table>__<kind>_<random>`: a helper table no other call uses.
fn load_table(table: &str, kind: &str) -> String {
    format!("{table}__{kind}_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_show_credentials() {
        assert_eq!(
            without_credentials("http://bob:s3cret@ch:8123/x"),
            "http://ch:8123/x"
        );
        assert_eq!(
            without_credentials("http://ch:8123/?user=bob&password=s3cret"),
            "http://ch:8123/"
        );
        assert_eq!(without_credentials("http://ch:8123"), "http://ch:8123");
        let ch = ClickHouse::new(ClickHouseConfig::new("http://bob:s3cret@ch:8123")).unwrap();
        assert_eq!(ch.url(), "http://ch:8123");
        assert!(!format!("{ch:?}").contains("s3cret"));
    }

    #[test]
    fn refuses_bad_settings() {
        let mut config = ClickHouseConfig::new("http://127.0.0.1:8123");
        config.database = "shop; DROP".into();
        assert!(
            ClickHouse::new(config)
                .unwrap_err()
                .to_string()
                .contains("database name")
        );
        let err = ClickHouse::new(ClickHouseConfig::new("127.0.0.1:9000")).unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
