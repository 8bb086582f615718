//! Keeping Delta tables small and fast to open: compaction, checkpoints and vacuum.
//!
//! - **Compaction** (delta-rs OPTIMIZE) rewrites a partition's small files into files of about
//!   the target size, in one commit that removes the small ones from the table (they stay on
//!   disk for queries still reading them).
//! - **A checkpoint** sums the log up to the current version in one Parquet file, so opening the
//!   table reads it plus the commits after it instead of every commit.
//! - **Vacuum** deletes the files that no version younger than the retention still reads, and
//!   files in the table's folder that no commit ever added (uploads of a writer that died).
//!   A query that started on an older version within the retention still finds its files.

use std::num::NonZeroU64;

use chrono::Duration;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::layout;
use crate::store::Lake;

/// How to maintain the tables.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Size compaction aims at for each file.
    pub target_file_size: NonZeroU64,
    /// How long files a table no longer reads are kept before vacuum deletes them.
    pub retention: Duration,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        Self {
            target_file_size: NonZeroU64::new(128 * 1024 * 1024).expect("non-zero"),
            retention: Duration::days(7),
        }
    }
}

/// What maintaining one table did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The table's folder, such as `analytics/daily_sales`.
    pub table: String,
    /// Live data files before and after.
    pub files_before: usize,
    pub files_after: usize,
    /// Small files replaced by compaction, and the files written in their place.
    pub compacted: u64,
    pub written: u64,
    /// Files deleted by vacuum.
    pub vacuumed: usize,
    /// The table's version after maintenance (the checkpoint is of the compacted version;
    /// a vacuum that deletes files commits after it).
    pub version: u64,
}

/// The folders of every Delta table in the lake: `<schema>/<table>` and the dead letters in
/// `<schema>/_rejected/<table>`.
pub async fn delta_tables(lake: &Lake) -> Result<Vec<Path>> {
    let mut found = Vec::new();
    for schema in layout::SCHEMAS {
        let schema_dir = Path::from(schema);
        let dead_letters = schema_dir.clone().join(layout::DEAD_LETTERS);
        for parent in [schema_dir, dead_letters] {
            let listing = lake
                .store()
                .list_with_delimiter(Some(&parent))
                .await
                .map_err(|e| Error::store(&parent, e))?;
            for dir in listing.common_prefixes {
                if dir.filename().is_some_and(layout::is_table_name)
                    && lake.has_delta_log(&dir).await?
                {
                    found.push(dir);
                }
            }
        }
    }
    Ok(found)
}

/// Maintains every Delta table of the lake in turn: each table's outcome, a failure of one not
/// stopping the others.
pub async fn maintain_all(
    lake: &Lake,
    options: &MaintainOptions,
) -> Result<Vec<(Path, Result<TableReport>)>> {
    let mut outcomes = Vec::new();
    for dir in delta_tables(lake).await? {
        let outcome = maintain_table(lake, &dir, options).await;
        outcomes.push((dir, outcome));
    }
    Ok(outcomes)
}

/// Compacts, checkpoints and vacuums the Delta table in `dir`.
pub async fn maintain_table(
    lake: &Lake,
    dir: &Path,
    options: &MaintainOptions,
) -> Result<TableReport> {
    let delta = |e| Error::delta(dir, e);
    let table = lake
        .open_delta(dir)
        .await?
        .ok_or_else(|| Error::delta_message(dir, "is not a Delta table"))?;
    let files_before = live_files(&table).map_err(delta)?;

    let (table, metrics) = table
        .optimize()
        .with_type(OptimizeType::Compact)
        .with_target_size(options.target_file_size)
        .with_writer_properties(crate::writer::writer_properties())
        .await
        .map_err(delta)?;
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .map_err(delta)?;
    // Retention shorter than the table's own setting is the operator's explicit choice.
    let (table, vacuumed) = table
        .vacuum()
        .with_retention_period(options.retention)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .await
        .map_err(delta)?;
    let version = table
        .version()
        .ok_or_else(|| Error::delta_message(dir, "no version after maintenance"))?;
    Ok(TableReport {
        table: dir.to_string(),
        files_before,
        files_after: live_files(&table).map_err(delta)?,
        compacted: metrics.num_files_removed,
        written: metrics.num_files_added,
        vacuumed: vacuumed.files_deleted.len(),
        version,
    })
}

fn live_files(table: &deltalake::DeltaTable) -> deltalake::DeltaResult<usize> {
    Ok(table.get_file_uris()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{CommitInfo, Mode};
    use crate::store::LakeConfig;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(from..from + n))],
        )
        .unwrap()
    }

    fn parquet_files_on_disk(root: &std::path::Path) -> usize {
        std::fs::read_dir(root)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".parquet")
            })
            .count()
    }

    async fn ids(lake: &Lake, dir: &Path) -> Vec<i64> {
        let table = lake.open_delta(dir).await.unwrap().unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_object_store(
            &url::Url::parse(layout::LAKE_URL).unwrap(),
            Arc::clone(lake.store()),
        );
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let mut out = Vec::new();
        for b in ctx
            .sql("SELECT id FROM t ORDER BY id")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
        {
            let column = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            out.extend(column.values().iter().copied());
        }
        out
    }

    #[tokio::test]
    async fn small_files_are_compacted_checkpointed_and_vacuumed_with_the_rows_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let table = layout::table_dir(layout::SYSTEM, "t");
        for i in 0..12 {
            lake.write_delta(
                &table,
                &[],
                vec![batch(i * 10, 10)],
                Mode::Append,
                CommitInfo::default(),
            )
            .await
            .unwrap();
        }
        // A file that no commit added: the upload of a writer that died before committing.
        let orphan = table.clone().join("part-orphan.parquet");
        crate::writer::write_file(&lake, orphan, batch(0, 1).schema(), &[batch(0, 1)])
            .await
            .unwrap();
        let folder = dir.path().join("system/t");
        assert_eq!(parquet_files_on_disk(&folder), 13);
        let before = ids(&lake, &table).await;
        assert_eq!(before, (0..120).collect::<Vec<_>>());

        assert_eq!(delta_tables(&lake).await.unwrap(), vec![table.clone()]);
        // Default retention: compaction replaces the small files, nothing is deleted yet.
        let report = maintain_table(&lake, &table, &MaintainOptions::default())
            .await
            .unwrap();
        assert_eq!((report.files_before, report.files_after), (12, 1));
        assert_eq!((report.compacted, report.written), (12, 1));
        assert_eq!(report.vacuumed, 0);
        assert_eq!(ids(&lake, &table).await, before);
        assert_eq!(parquet_files_on_disk(&folder), 14);
        let checkpoint = format!("{:020}.checkpoint.parquet", report.version);
        assert!(
            folder.join("_delta_log").join(&checkpoint).is_file(),
            "{checkpoint}"
        );

        // No retention: the replaced files and the orphan go, the live file stays.
        let report = maintain_table(
            &lake,
            &table,
            &MaintainOptions {
                retention: Duration::zero(),
                ..MaintainOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(report.compacted, 0, "nothing left to compact");
        assert_eq!(report.vacuumed, 13);
        assert_eq!(parquet_files_on_disk(&folder), 1);
        assert_eq!(ids(&lake, &table).await, before);
    }
}
