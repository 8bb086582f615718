//! Delta Lake tables in the lake, through delta-rs.
//!
//! Every table of the lake is a Delta table at `<schema>/<table>/`: Parquet files plus a
//! `_delta_log/` of numbered JSON commits. A commit is one object written with a conditional PUT
//! (`If-None-Match: *` on S3, create-exclusive on a local disk), so two writers can never both
//! write version N: the loser sees the conflict, checks whether the winner touched what it read,
//! and retries on top of it or fails clearly. No lock service is needed.
//!
//! delta-rs knows a table by URL and finds the store by the URL's scheme. The lake registers its
//! own scheme, `lake://shop/`, whose root is the lake's root store (local folder or S3 bucket and
//! prefix): a table is `lake://shop/<schema>/<table>`, the same URL DataFusion already knows the
//! lake by, so a query reads the table through the same store and nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use arrow::array::RecordBatch;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use deltalake::DeltaTable;
use deltalake::errors::DeltaTableError;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::kernel::{StructType, Transaction, Version};
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake::protocol::SaveMode;
use futures::StreamExt;
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};
use crate::layout::LAKE_URL;
use crate::store::Lake;
use crate::writer::writer_properties;

/// The log store of every lake table: delta-rs' default one, whose commits are conditional PUTs.
#[derive(Debug, Default)]
struct LakeLogStores;

impl LogStoreFactory for LakeLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_scheme() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let scheme = Url::parse(LAKE_URL).expect("the lake URL parses");
        let scheme = Url::parse(&format!("{}://", scheme.scheme())).expect("a scheme URL parses");
        logstore_factories().insert(scheme, Arc::new(LakeLogStores));
    });
}

/// The folder of a Delta table's log, inside the table's folder.
pub const LOG_DIR: &str = "_delta_log";

/// The URL of the table in folder `dir`: `lake://shop/<dir>`.
pub fn table_url(dir: &Path) -> Result<Url> {
    Url::parse(&Lake::url_of(dir)).map_err(|e| Error::InvalidLocation {
        location: dir.to_string(),
        reason: e.to_string(),
    })
}

/// Properties of every table the lake creates.
///
/// A checkpoint every 10 commits instead of Delta's default 100: each commit's writer brings its
/// snapshot up to date by replaying the commits since the last checkpoint, so with frequent small
/// commits (a run record, a day of an aggregate) replaying up to 100 of them cost more than the
/// write itself.
const TABLE_PROPERTIES: [(&str, &str); 1] = [("delta.checkpointInterval", "10")];

/// Tries of a write whose commit conflicts with another one.
const CONFLICT_ATTEMPTS: u64 = 5;

/// What a lake keeps between Delta writes.
#[derive(Default)]
pub(crate) struct WriteCache {
    /// Tables this process has written, at the version of its last commit, by folder: the next
    /// write reads only the commits after it instead of the whole log.
    tables: std::sync::Mutex<HashMap<Path, DeltaTable>>,
    /// The DataFusion session writes plan in, built once (building one per write cost more
    /// than the commit itself).
    session: std::sync::OnceLock<Arc<SessionState>>,
}

impl std::fmt::Debug for WriteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteCache").finish_non_exhaustive()
    }
}

/// What a write does to the rows already in the table.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Adds the rows.
    Append,
    /// Replaces every row.
    Overwrite,
    /// Replaces the rows that match the predicate (for example one day: `dt = DATE '…'`).
    Replace(Expr),
}

impl Mode {
    /// Replaces the rows of one day: `<column> = DATE '<day>'`.
    pub fn day(column: &str, day: chrono::NaiveDate) -> Self {
        let days = (day - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days();
        let days = i32::try_from(days).expect("a day of the lake fits Date32");
        Self::Replace(
            datafusion::prelude::col(column).eq(datafusion::prelude::lit(
                datafusion::scalar::ScalarValue::Date32(Some(days)),
            )),
        )
    }
}

/// What a commit records beside its files.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    /// Application transactions (`txn` actions): an id and the version it reached, such as a
    /// Kafka partition and its last offset. A commit whose transaction id was also committed
    /// by someone else since this writer read the table fails instead of landing.
    pub transactions: Vec<(String, i64)>,
    /// The versions application transactions must be at when this writer commits (`None`:
    /// never committed). A writer that finds another version (a worker whose partition another
    /// worker took over and committed) fails with [`Error::Fenced`] instead of committing; one
    /// that loses the race to such a commit fails on the conflict.
    pub expected: Vec<(String, Option<i64>)>,
    /// Free-form values kept in the commit's `commitInfo` (such as an export watermark).
    pub metadata: HashMap<String, serde_json::Value>,
}

impl CommitInfo {
    /// A commit that moves application transaction `app_id` to `version`, only when the table
    /// still has it at `expected` (see [`CommitInfo::expected`]).
    pub fn transaction(app_id: &str, version: i64, expected: Option<i64>) -> Self {
        Self {
            transactions: vec![(app_id.to_string(), version)],
            expected: vec![(app_id.to_string(), expected)],
            ..Self::default()
        }
    }
}

/// The path from the lake root of a live file of the table in folder `dir` (the log names
/// files relative to their table).
pub fn file_path(dir: &Path, file: &deltalake::kernel::LogicalFileView) -> Path {
    file.object_store_path()
        .parts()
        .fold(dir.clone(), |path, part| path.join(part))
}

impl Lake {
    pub(crate) fn write_session(&self) -> Arc<dyn datafusion::catalog::Session> {
        let state = self.delta_cache.session.get_or_init(|| {
            let state = deltalake::delta_datafusion::create_session().state();
            state.runtime_env().register_object_store(
                &Url::parse(LAKE_URL).expect("the lake URL parses"),
                Arc::clone(self.store()),
            );
            Arc::new(state)
        });
        Arc::clone(state) as Arc<dyn datafusion::catalog::Session>
    }

    /// The Delta table in folder `dir` (such as `stage/products`), not loaded (no I/O yet).
    pub fn delta_table(&self, dir: &Path) -> Result<DeltaTable> {
        register_scheme();
        let root = Url::parse(LAKE_URL).expect("the lake URL parses");
        deltalake::DeltaTableBuilder::from_url(table_url(dir)?)
            .and_then(|b| {
                b.with_storage_backend(Arc::clone(self.store()), root)
                    .build()
            })
            .map_err(|e| Error::delta(dir, e))
    }

    /// The Delta table in folder `dir` at its latest version; `None` when there is no table
    /// there yet (no `_delta_log/`). A log that cannot be read is an error, not "no table".
    pub async fn open_delta(&self, dir: &Path) -> Result<Option<DeltaTable>> {
        // Looked for first: delta-rs logs a missing log as an error.
        if !self.has_delta_log(dir).await? {
            return Ok(None);
        }
        let mut delta = self.delta_table(dir)?;
        delta.load().await.map_err(|e| Error::delta(dir, e))?;
        Ok(Some(delta))
    }

    /// The version of application transaction `app_id` in the table in folder `dir`; `None`
    /// when the table or the transaction does not exist.
    pub async fn transaction_version(&self, dir: &Path, app_id: &str) -> Result<Option<i64>> {
        let Some(delta) = self.open_delta(dir).await? else {
            return Ok(None);
        };
        let state = delta.snapshot().map_err(|e| Error::delta(dir, e))?;
        state
            .transaction_version(delta.log_store().as_ref(), app_id)
            .await
            .map_err(|e| Error::delta(dir, e))
    }

    /// True when folder `dir` has a Delta log (one LIST of `_delta_log/`, stopped at the first
    /// object).
    pub async fn has_delta_log(&self, dir: &Path) -> Result<bool> {
        let log = dir.clone().join(LOG_DIR);
        match self.store().list(Some(&log)).next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(Error::store(&log, e)),
        }
    }

    /// Commits `batches` to the table in folder `dir` (created, partitioned by `partitions`, if
    /// it does not exist yet) as one Delta commit and returns the version written.
    ///
    /// A commit that conflicts with one committed meanwhile (two refreshes of the same day, a
    /// compaction of the day being replaced) changed nothing, so the write is planned again on
    /// the new version and retried, and its rows land once. A commit that carries application
    /// transactions is not retried: a conflict there means another writer owns them.
    pub async fn write_delta(
        &self,
        dir: &Path,
        partitions: &[&str],
        batches: Vec<RecordBatch>,
        mode: Mode,
        commit: CommitInfo,
    ) -> Result<Version> {
        let schema = batches.first().map(|b| b.schema()).ok_or_else(|| {
            Error::delta_message(dir, "a write needs at least one batch (it may be empty)")
        })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let delta = self.table_for_write(dir, &schema, partitions).await?;
            for (id, expected) in &commit.expected {
                let state = delta.snapshot().map_err(|e| Error::delta(dir, e))?;
                let found = state
                    .transaction_version(delta.log_store().as_ref(), id)
                    .await
                    .map_err(|e| Error::delta(dir, e))?;
                if found != *expected {
                    return Err(Error::Fenced {
                        table: dir.to_string(),
                        app_id: id.clone(),
                        expected: *expected,
                        found,
                    });
                }
            }
            let properties = CommitProperties::default()
                .with_metadata(commit.metadata.clone())
                .with_application_transactions(
                    commit
                        .transactions
                        .iter()
                        .map(|(id, version)| Transaction::new(id, *version))
                        .collect(),
                );
            let mut write = delta
                .write(batches.clone())
                .with_save_mode(match mode {
                    Mode::Append => SaveMode::Append,
                    Mode::Overwrite | Mode::Replace(_) => SaveMode::Overwrite,
                })
                .with_writer_properties(writer_properties())
                .with_commit_properties(properties)
                .with_session_state(self.write_session());
            if let Mode::Replace(predicate) = &mode {
                write = write.with_replace_where(predicate.clone());
            }
            match write.await {
                Ok(written) => {
                    let version = written
                        .version()
                        .ok_or_else(|| Error::delta_message(dir, "no version after a commit"))?;
                    self.delta_cache
                        .tables
                        .lock()
                        .expect("table cache lock poisoned")
                        .insert(dir.clone(), written);
                    return Ok(version);
                }
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(conflict),
                }) if commit.transactions.is_empty() && attempt < CONFLICT_ATTEMPTS => {
                    tracing::debug!(table = %dir, attempt, %conflict, "commit conflict; planning the write again");
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                }
                Err(e) => return Err(Error::delta(dir, e)),
            }
        }
    }

    /// The table to write to, up to date: kept from this process's last write and brought up
    /// to date, or loaded, or created (with its schema, partitions and properties, in a commit of
    /// its own before any data file is written).
    async fn table_for_write(
        &self,
        dir: &Path,
        schema: &arrow::datatypes::SchemaRef,
        partitions: &[&str],
    ) -> Result<DeltaTable> {
        let cached = self
            .delta_cache
            .tables
            .lock()
            .expect("table cache lock poisoned")
            .remove(dir);
        if let Some(mut delta) = cached {
            // Reads only the commits after its version.
            delta
                .update_incremental(None)
                .await
                .map_err(|e| Error::delta(dir, e))?;
            return Ok(delta);
        }
        self.open_or_create(dir, schema, partitions).await
    }

    /// The table in folder `dir` at its latest version, created (with `schema`, `partitions`
    /// and the lake's table properties, in a commit of its own) when there is none.
    pub(crate) async fn open_or_create(
        &self,
        dir: &Path,
        schema: &arrow::datatypes::SchemaRef,
        partitions: &[&str],
    ) -> Result<DeltaTable> {
        if let Some(delta) = self.open_delta(dir).await? {
            return Ok(delta);
        }
        self.refuse_old_layout(dir).await?;
        let columns: StructType = schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| Error::delta(dir, e.into()))?;
        // No retries: when another writer created the table first, its table is the one.
        let created = self
            .delta_table(dir)?
            .create()
            .with_columns(columns.fields().cloned())
            .with_partition_columns(partitions.iter().copied())
            .with_configuration(TABLE_PROPERTIES.iter().map(|(k, v)| (*k, Some(*v))))
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(delta) => Ok(delta),
            Err(e) => match self.open_delta(dir).await? {
                Some(delta) => Ok(delta),
                None => Err(Error::delta(dir, e)),
            },
        }
    }

    /// Refuses to start a Delta table in a folder that holds data files already: those are
    /// an older lake's, and the new table would hide them (and a vacuum delete them).
    async fn refuse_old_layout(&self, dir: &Path) -> Result<()> {
        let mut listing = self.store().list(Some(dir));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| Error::store(dir, e))?;
            let is_data = meta
                .location
                .filename()
                .is_some_and(crate::layout::is_data_file);
            let hidden = meta
                .location
                .prefix_match(dir)
                .into_iter()
                .flatten()
                .any(|part| crate::layout::is_hidden(part.as_ref()));
            if is_data && !hidden {
                return Err(Error::OldLayout {
                    table: dir.to_string(),
                    file: meta.location.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LakeConfig;
    use arrow::array::{Date32Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::{col, lit};
    use datafusion::scalar::ScalarValue;

    fn lake_at(root: &std::path::Path) -> Lake {
        Lake::open(&LakeConfig {
            root: root.display().to_string(),
            ..Default::default()
        })
        .unwrap()
    }

    fn lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_at(dir.path());
        (dir, lake)
    }

    fn batch(days: &[i32], values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("dt", DataType::Date32, false),
            Field::new("n", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from(days.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    async fn rows(lake: &Lake, dir: &Path) -> Vec<(i32, i64)> {
        let table = lake.open_delta(dir).await.unwrap().expect("a table");
        let mut out = Vec::new();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_object_store(&Url::parse(LAKE_URL).unwrap(), Arc::clone(lake.store()));
        let provider = table.table_provider().await.unwrap();
        ctx.register_table("t", provider).unwrap();
        let frame = ctx
            .sql("SELECT CAST(dt AS INT), n FROM t ORDER BY 1, 2")
            .await
            .unwrap();
        for b in frame.collect().await.unwrap() {
            let days = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int32Array>();
            let values = b.column(1).as_any().downcast_ref::<Int64Array>();
            let (days, values) = (days.unwrap(), values.unwrap());
            out.extend((0..b.num_rows()).map(|i| (days.value(i), values.value(i))));
        }
        out
    }

    fn day(d: i32) -> Mode {
        Mode::Replace(col("dt").eq(lit(ScalarValue::Date32(Some(d)))))
    }

    #[tokio::test]
    async fn a_missing_table_is_none_and_the_first_write_creates_it_in_a_commit_of_its_own() {
        let (_dir, lake) = lake();
        let dir = Path::from("analytics/t");
        assert!(lake.open_delta(&dir).await.unwrap().is_none());
        let version = lake
            .write_delta(
                &dir,
                &["dt"],
                vec![batch(&[1, 2], &[10, 20])],
                Mode::Append,
                CommitInfo::default(),
            )
            .await
            .unwrap();
        // Version 0 creates the table (schema, partitions, properties), version 1 adds the rows.
        assert_eq!(version, 1);
        assert_eq!(rows(&lake, &dir).await, vec![(1, 10), (2, 20)]);
        let table = lake.open_delta(&dir).await.unwrap().unwrap();
        assert_eq!(
            table.snapshot().unwrap().metadata().partition_columns(),
            &vec!["dt".to_string()]
        );
    }

    #[tokio::test]
    async fn replacing_a_day_swaps_only_its_rows_and_a_rerun_changes_nothing() {
        let (_dir, lake) = lake();
        let dir = Path::from("analytics/t");
        lake.write_delta(
            &dir,
            &["dt"],
            vec![batch(&[1, 2, 2], &[10, 20, 21])],
            Mode::Append,
            CommitInfo::default(),
        )
        .await
        .unwrap();
        for _ in 0..2 {
            lake.write_delta(
                &dir,
                &["dt"],
                vec![batch(&[2], &[99])],
                day(2),
                CommitInfo::default(),
            )
            .await
            .unwrap();
            assert_eq!(rows(&lake, &dir).await, vec![(1, 10), (2, 99)]);
        }
        // A day without rows any more: its rows go, the others stay.
        let empty = RecordBatch::new_empty(batch(&[], &[]).schema());
        lake.write_delta(&dir, &["dt"], vec![empty], day(1), CommitInfo::default())
            .await
            .unwrap();
        assert_eq!(rows(&lake, &dir).await, vec![(2, 99)]);
    }

    #[tokio::test]
    async fn commits_carry_application_transactions_and_metadata() {
        let (_dir, lake) = lake();
        let dir = Path::from("stage/t");
        let commit = CommitInfo {
            transactions: vec![("group-topic-0".into(), 41)],
            metadata: HashMap::from([("watermark".into(), serde_json::json!("2026-01-01"))]),
            ..CommitInfo::default()
        };
        lake.write_delta(&dir, &[], vec![batch(&[1], &[1])], Mode::Append, commit)
            .await
            .unwrap();
        let table = lake.open_delta(&dir).await.unwrap().unwrap();
        let state = table.snapshot().unwrap();
        let version = state
            .transaction_version(table.log_store().as_ref(), "group-topic-0")
            .await
            .unwrap();
        assert_eq!(version, Some(41));
        let history: Vec<_> = futures::TryStreamExt::try_collect(table.history(Some(1)))
            .await
            .unwrap();
        assert_eq!(
            history[0].info.get("watermark"),
            Some(&serde_json::json!("2026-01-01"))
        );
    }

    #[tokio::test]
    async fn overwrite_replaces_everything() {
        let (_dir, lake) = lake();
        let dir = Path::from("stage/t");
        lake.write_delta(
            &dir,
            &[],
            vec![batch(&[1, 2], &[1, 2])],
            Mode::Append,
            CommitInfo::default(),
        )
        .await
        .unwrap();
        lake.write_delta(
            &dir,
            &[],
            vec![batch(&[3], &[3])],
            Mode::Overwrite,
            CommitInfo::default(),
        )
        .await
        .unwrap();
        assert_eq!(rows(&lake, &dir).await, vec![(3, 3)]);
    }

    #[tokio::test]
    async fn concurrent_first_writers_and_replaces_of_one_day_leave_it_once() {
        let dir = tempfile::tempdir().unwrap();
        // Two processes: each lake has its own cache of open tables.
        let (a, b) = (lake_at(dir.path()), lake_at(dir.path()));
        let table = Path::from("analytics/t");
        let replace = |lake: Lake, n: i64| {
            let table = table.clone();
            async move {
                lake.write_delta(
                    &table,
                    &["dt"],
                    vec![batch(&[7], &[n])],
                    Mode::Replace(col("dt").eq(lit(ScalarValue::Date32(Some(7))))),
                    CommitInfo::default(),
                )
                .await
            }
        };
        for round in 0..5 {
            let (ra, rb) = tokio::join!(replace(a.clone(), round), replace(b.clone(), 100 + round));
            ra.unwrap();
            rb.unwrap();
            let delta = a.open_delta(&table).await.unwrap().unwrap();
            assert_eq!(delta.get_file_uris().unwrap().count(), 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn a_folder_of_the_old_layout_is_not_turned_into_a_delta_table() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_at(dir.path());
        let table = Path::from("analytics/t");
        let old = table.clone().join("dt=1970-01-08").join("data.parquet");
        crate::writer::write_file(&lake, old, batch(&[7], &[1]).schema(), &[batch(&[7], &[1])])
            .await
            .unwrap();
        let err = lake
            .write_delta(
                &table,
                &["dt"],
                vec![batch(&[7], &[2])],
                Mode::Append,
                CommitInfo::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::OldLayout { .. }), "{err}");
        assert!(err.to_string().contains("lake convert"), "{err}");
        assert!(lake.open_delta(&table).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_writer_whose_partition_moved_on_fails_and_its_rows_never_land() {
        let dir = tempfile::tempdir().unwrap();
        // Two processes: the worker that lost the partition and its new owner.
        let (stale, owner) = (lake_at(dir.path()), lake_at(dir.path()));
        let table = Path::from("stage/t");
        let commit =
            |version, expected| CommitInfo::transaction("group-topic-0", version, expected);
        stale
            .write_delta(
                &table,
                &[],
                vec![batch(&[1], &[1])],
                Mode::Append,
                commit(9, None),
            )
            .await
            .unwrap();
        // The stale worker's view of the table, before the new owner commits.
        let before = stale.open_delta(&table).await.unwrap().unwrap();
        owner
            .write_delta(
                &table,
                &[],
                vec![batch(&[2], &[2])],
                Mode::Append,
                commit(19, Some(9)),
            )
            .await
            .unwrap();
        // The stale worker still expects 9: checked against the latest version, it is fenced.
        let err = stale
            .write_delta(
                &table,
                &[],
                vec![batch(&[3], &[3])],
                Mode::Append,
                commit(19, Some(9)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Fenced {
                    found: Some(19),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_conflict());
        // A commit based on the version read before the new owner's (the race between the check
        // and the commit) fails on the conflict of the same transaction id.
        let raced = before
            .write(vec![batch(&[4], &[4])])
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transaction(Transaction::new("group-topic-0", 29)),
            )
            .await;
        let Err(raced) = raced else {
            panic!("the raced commit landed");
        };
        let err = Error::delta(&table, raced);
        assert!(err.is_conflict(), "{err}");
        assert_eq!(rows(&stale, &table).await, vec![(1, 1), (2, 2)]);
        assert_eq!(
            owner
                .transaction_version(&table, "group-topic-0")
                .await
                .unwrap(),
            Some(19)
        );
    }

    #[tokio::test]
    async fn a_commit_without_rows_still_records_its_transaction() {
        let (_dir, lake) = lake();
        let table = Path::from("stage/t");
        let empty = RecordBatch::new_empty(batch(&[], &[]).schema());
        let commit = CommitInfo::transaction("g-t-1", 41, None);
        lake.write_delta(&table, &["dt"], vec![empty], Mode::Append, commit)
            .await
            .unwrap();
        assert_eq!(
            lake.transaction_version(&table, "g-t-1").await.unwrap(),
            Some(41)
        );
        assert!(rows(&lake, &table).await.is_empty());
    }
}
