//! Snapshot tables (customers, sellers, products): Delta tables rewritten as a whole in one
//! commit.
//!
//! A [`SnapshotWriter`] streams the new content into Parquet files of the table while its
//! producer is still reading the source, and commits them with the removal of every file of the
//! version it started from: readers see the old snapshot or the new one, never a mix, and the
//! files of a write that died midway are never referenced (a `maintain` vacuum deletes them).
//! The commit is based on the version the writer started from and is not retried: when another
//! writer committed in between, nothing is changed and the write fails with a conflict, so an
//! incremental export never overwrites content it did not read.
//!
//! A writer's properties (such as an export's watermark) are kept in its commit's metadata, under
//! [`PROPERTIES_KEY`]; [`read`] returns those of the newest commit that has them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::streaming::PartitionStream;
use deltalake::DeltaTable;
use deltalake::kernel::Version;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use futures::{Stream, TryStreamExt};
use object_store::path::Path;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::layout;
use crate::store::Lake;
use crate::writer::writer_properties;

/// The commit-metadata key of a snapshot writer's properties (a JSON object of strings).
pub const PROPERTIES_KEY: &str = "shop.properties";

/// How many of the newest commits [`read`] looks through for the last snapshot's properties
/// (the commits in between are maintenance: compactions and the like).
const PROPERTIES_HISTORY: usize = 100;

/// Default target size of a snapshot's Parquet files.
pub const TARGET_FILE_BYTES: u64 = 128 << 20;

/// The live version of a snapshot table, as a writer starting from it needs it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The Delta version read.
    pub version: Version,
    /// The live data files.
    pub files: Vec<SnapshotFile>,
    /// The properties of the last snapshot written (empty when none are within the newest
    /// [`PROPERTIES_HISTORY`] commits).
    pub properties: BTreeMap<String, String>,
    table: DeltaTable,
}

/// One live data file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// From the lake root.
    pub path: Path,
    pub size: u64,
    /// From the file's statistics in the log.
    pub rows: Option<u64>,
}

impl Snapshot {
    /// Rows in the snapshot, from the files' statistics.
    pub fn rows(&self) -> u64 {
        self.files.iter().filter_map(|f| f.rows).sum()
    }
}

/// Reads the live version of `<schema>.<table>`; `None` when there is no such table.
pub async fn read(lake: &Lake, schema: &str, table: &str) -> Result<Option<Snapshot>> {
    let dir = layout::table_dir(schema, table);
    let Some(delta) = lake.open_delta(&dir).await? else {
        return Ok(None);
    };
    let state = delta.snapshot().map_err(|e| Error::delta(&dir, e))?;
    let version = state.version();
    let files = state
        .log_data()
        .iter()
        .map(|f| SnapshotFile {
            path: crate::delta::file_path(&dir, &f),
            size: f.size().max(0) as u64,
            rows: f.num_records().map(|n| n as u64),
        })
        .collect();
    let mut properties = BTreeMap::new();
    let mut history = delta.history(Some(PROPERTIES_HISTORY));
    while let Some(commit) = history
        .try_next()
        .await
        .map_err(|e| Error::delta(&dir, e))?
    {
        if let Some(found) = commit.info.get(PROPERTIES_KEY) {
            properties = serde_json::from_value(found.clone()).map_err(|e| {
                Error::delta_message(&dir, format!("{PROPERTIES_KEY} of version {version}: {e}"))
            })?;
            break;
        }
    }
    drop(history);
    Ok(Some(Snapshot {
        version,
        files,
        properties,
        table: delta,
    }))
}

/// Writes a whole new snapshot of a table and commits it on [`commit`]; dropping or
/// [`abort`]ing it commits nothing.
///
/// [`commit`]: SnapshotWriter::commit
/// [`abort`]: SnapshotWriter::abort
pub struct SnapshotWriter {
    table: String,
    batches: mpsc::Sender<RecordBatch>,
    decision: Option<oneshot::Sender<bool>>,
    task: JoinHandle<Result<Version>>,
    rows: std::sync::atomic::AtomicU64,
}

impl SnapshotWriter {
    /// Starts a snapshot of `<schema_name>.<table>` that replaces `base`, the version the caller
    /// read (and maybe built the new content from), or the live version when `base` is `None`
    /// (creating the table when there is none). `properties` go into the commit's metadata.
    pub async fn begin(
        lake: &Lake,
        schema_name: &str,
        table: &str,
        arrow_schema: SchemaRef,
        base: Option<&Snapshot>,
        properties: BTreeMap<String, String>,
    ) -> Result<Self> {
        let size = TARGET_FILE_BYTES;
        Self::begin_sized(
            lake,
            schema_name,
            table,
            arrow_schema,
            base,
            properties,
            size,
        )
        .await
    }

    /// [`begin`](Self::begin) with Parquet files of about `target_file_bytes`.
    pub async fn begin_sized(
        lake: &Lake,
        schema_name: &str,
        table: &str,
        arrow_schema: SchemaRef,
        base: Option<&Snapshot>,
        properties: BTreeMap<String, String>,
        target_file_bytes: u64,
    ) -> Result<Self> {
        if !layout::is_table_name(table) {
            return Err(Error::InvalidTableName {
                name: table.to_string(),
            });
        }
        let dir = layout::table_dir(schema_name, table);
        let delta = match base {
            Some(base) => base.table.clone(),
            None => lake.open_or_create(&dir, &arrow_schema, &[]).await?,
        };
        let (batches, receiver) = mpsc::channel(2);
        let (decision, decided) = oneshot::channel();
        let input = Input {
            schema: Arc::clone(&arrow_schema),
            stream: Mutex::new(Some(Box::pin(Gate {
                schema: Arc::clone(&arrow_schema),
                state: GateState::Batches(receiver, decided),
            }))),
        };
        let provider = StreamingTable::try_new(arrow_schema, vec![Arc::new(input)])?;
        let plan =
            LogicalPlanBuilder::scan("snapshot", provider_as_source(Arc::new(provider)), None)?
                .build()?;
        let metadata = HashMap::from([(
            PROPERTIES_KEY.to_string(),
            serde_json::to_value(&properties).expect("string maps serialise"),
        )]);
        let base_version = delta.version().unwrap_or(0);
        let write = delta
            .write(Vec::new())
            .with_input_plan(plan)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_writer_properties(writer_properties())
            .with_target_file_size(std::num::NonZeroU64::new(target_file_bytes.max(1)))
            .with_commit_properties(
                CommitProperties::default()
                    .with_metadata(metadata)
                    .with_max_retries(0),
            )
            .with_session_state(lake.write_session());
        let task_dir = dir.clone();
        let task = tokio::spawn(async move {
            let written = write.await.map_err(|e| match e {
                // With no retries, a commit after the base version is reported as running out
                // of attempts: for a snapshot that is the conflict it is.
                deltalake::errors::DeltaTableError::Transaction {
                    source: deltalake::kernel::transaction::TransactionError::MaxCommitAttempts(_),
                } => Error::SnapshotConflict {
                    table: task_dir.to_string(),
                    base: base_version,
                },
                e => Error::delta(&task_dir, e),
            })?;
            written
                .version()
                .ok_or_else(|| Error::delta_message(&task_dir, "no version after a commit"))
        });
        Ok(Self {
            table: dir.to_string(),
            batches,
            decision: Some(decision),
            task,
            rows: Default::default(),
        })
    }

    /// Adds a batch to the snapshot (waits while the files are being written).
    pub async fn write(&self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(());
        }
        if self.batches.send(batch).await.is_err() {
            return Err(Error::delta_message(
                &self.table,
                "the snapshot's write stopped (its error is returned by commit)",
            ));
        }
        self.rows
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(table = %self.table, rows, "batch written");
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Finishes the files and commits the snapshot; returns the version written.
    pub async fn commit(mut self) -> Result<Version> {
        drop(self.batches);
        if let Some(decision) = self.decision.take() {
            // A write that already failed has dropped the receiver; its error is the answer.
            let _ = decision.send(true);
        }
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::delta_message(
                &self.table,
                format!("the snapshot's write task failed: {e}"),
            )),
        }
    }

    /// Abandons the snapshot: nothing is committed (files already written stay unreferenced
    /// until a vacuum). Returns the write's own error when it had failed before (then a
    /// [`write`](Self::write) said only that it stopped).
    pub async fn abort(mut self) -> Option<Error> {
        let failed_before = self.batches.is_closed();
        drop(self.batches);
        if let Some(decision) = self.decision.take() {
            let _ = decision.send(false);
        }
        let result = self.task.await;
        if !failed_before {
            // The write ends with "abandoned"; that is the expected outcome.
            return None;
        }
        match result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(Error::delta_message(
                &self.table,
                format!("the snapshot's write task failed: {e}"),
            )),
        }
    }
}

/// The writer's batches as the single partition of the write's input.
struct Input {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").finish_non_exhaustive()
    }
}

impl PartitionStream for Input {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().expect("input lock poisoned").take();
        taken.unwrap_or_else(|| {
            // Planned once per writer; a second execution has nothing to give.
            Box::pin(Gate {
                schema: Arc::clone(&self.schema),
                state: GateState::Failed,
            })
        })
    }
}

/// The batches sent to the writer; at their end, the writer's decision: commit (end of input)
/// or abandon (an error, so that the write commits nothing).
struct Gate {
    schema: SchemaRef,
    state: GateState,
}

enum GateState {
    Batches(mpsc::Receiver<RecordBatch>, oneshot::Receiver<bool>),
    Deciding(oneshot::Receiver<bool>),
    Done,
    Failed,
}

impl Stream for Gate {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut self.state {
                GateState::Batches(batches, _) => match batches.poll_recv(cx) {
                    Poll::Ready(Some(batch)) => return Poll::Ready(Some(Ok(batch))),
                    Poll::Ready(None) => {
                        let GateState::Batches(_, decided) =
                            std::mem::replace(&mut self.state, GateState::Done)
                        else {
                            unreachable!("matched above")
                        };
                        self.state = GateState::Deciding(decided);
                    }
                    Poll::Pending => return Poll::Pending,
                },
                GateState::Deciding(decided) => {
                    return match Pin::new(decided).poll(cx) {
                        Poll::Ready(Ok(true)) => {
                            self.state = GateState::Done;
                            Poll::Ready(None)
                        }
                        Poll::Ready(_) => {
                            self.state = GateState::Done;
                            Poll::Ready(Some(Err(DataFusionError::Execution(
                                "the snapshot was abandoned".into(),
                            ))))
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
                GateState::Done => return Poll::Ready(None),
                GateState::Failed => {
                    self.state = GateState::Done;
                    return Poll::Ready(Some(Err(DataFusionError::Internal(
                        "a snapshot's input was executed twice".into(),
                    ))));
                }
            }
        }
    }
}

impl RecordBatchStream for Gate {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LakeConfig;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        (dir, lake)
    }

    fn batch(values: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(values))]).unwrap()
    }

    fn props(watermark: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("watermark".to_string(), watermark.to_string())])
    }

    /// A writer of `stage.t` replacing `base`, with the watermark `watermark`.
    async fn writer(lake: &Lake, base: Option<&Snapshot>, watermark: &str) -> SnapshotWriter {
        let schema = batch(0..0).schema();
        SnapshotWriter::begin(lake, "stage", "t", schema, base, props(watermark))
            .await
            .unwrap()
    }

    /// `stage.t` with rows 0..3 committed with the watermark "a".
    async fn three_rows(lake: &Lake) -> Snapshot {
        let first = writer(lake, None, "a").await;
        first.write(batch(0..3)).await.unwrap();
        first.commit().await.unwrap();
        read(lake, "stage", "t").await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_snapshot_replaces_the_whole_table_and_keeps_its_properties() {
        let (_dir, lake) = lake();
        assert!(read(&lake, "stage", "t").await.unwrap().is_none());
        let first = writer(&lake, None, "a").await;
        first.write(batch(0..3)).await.unwrap();
        first.write(batch(3..5)).await.unwrap();
        assert_eq!(first.rows(), 5);
        first.commit().await.unwrap();
        let one = read(&lake, "stage", "t").await.unwrap().unwrap();
        assert_eq!(one.rows(), 5);
        assert_eq!(one.properties, props("a"));

        let second = writer(&lake, Some(&one), "b").await;
        second.write(batch(10..12)).await.unwrap();
        let version = second.commit().await.unwrap();
        let two = read(&lake, "stage", "t").await.unwrap().unwrap();
        assert_eq!(two.version, version);
        assert_eq!(two.rows(), 2);
        assert_eq!(two.properties, props("b"));
        assert!(
            two.files
                .iter()
                .all(|f| f.path.as_ref().starts_with("stage/t/"))
        );
    }

    #[tokio::test]
    async fn an_abandoned_snapshot_commits_nothing() {
        let (_dir, lake) = lake();
        let before = three_rows(&lake).await;
        let writer = writer(&lake, Some(&before), "b").await;
        writer.write(batch(0..100)).await.unwrap();
        assert!(writer.abort().await.is_none());
        let after = read(&lake, "stage", "t").await.unwrap().unwrap();
        assert_eq!(after.version, before.version);
        assert_eq!(after.rows(), 3);
        assert_eq!(after.properties, props("a"));
    }

    #[tokio::test]
    async fn a_writer_based_on_a_version_that_was_replaced_meanwhile_fails_and_changes_nothing() {
        let (_dir, lake) = lake();
        let base = three_rows(&lake).await;
        let winner = writer(&lake, Some(&base), "w").await;
        let loser = writer(&lake, Some(&base), "l").await;
        winner.write(batch(0..7)).await.unwrap();
        loser.write(batch(0..9)).await.unwrap();
        winner.commit().await.unwrap();
        let err = loser.commit().await.unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert!(err.to_string().contains("stage/t"), "{err}");
        let live = read(&lake, "stage", "t").await.unwrap().unwrap();
        assert_eq!(live.rows(), 7);
        assert_eq!(live.properties, props("w"));
    }

    #[tokio::test]
    async fn an_empty_snapshot_is_an_empty_table_with_its_schema() {
        let (_dir, lake) = lake();
        let base = three_rows(&lake).await;
        let writer = writer(&lake, Some(&base), "b").await;
        writer.commit().await.unwrap();
        let empty = read(&lake, "stage", "t").await.unwrap().unwrap();
        assert!(empty.files.is_empty());
        assert_eq!(empty.properties, props("b"));
    }

    #[tokio::test]
    async fn a_dropped_writer_commits_nothing() {
        let (_dir, lake) = lake();
        let before = three_rows(&lake).await;
        let writer = writer(&lake, Some(&before), "b").await;
        writer.write(batch(0..100)).await.unwrap();
        drop(writer);
        // The write task sees the end of its input without a decision and fails; give it time.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let after = read(&lake, "stage", "t").await.unwrap().unwrap();
        assert_eq!(after.version, before.version);
        assert_eq!(after.rows(), 3);
    }
}
