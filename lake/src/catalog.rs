//! The `shop` catalog: schemas `stage`, `analytics` and `system`, whose tables are the Delta
//! tables of the lake.
//!
//! Table discovery runs in the background ([`LakeCatalog::spawn_refresher`]) because DataFusion
//! asks for table names synchronously; a table that is referenced before the refresher has seen
//! it is also loaded on demand. A table is a folder with a `_delta_log/`; every query reads its
//! latest commit (the log is read incrementally from the version held, or from the newest
//! checkpoint), through delta-rs' scan with partition pruning and file-statistics pruning. A
//! folder of Parquet files without a log (a lake from before the move to Delta) is not served:
//! it is named once in a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::layout;
use crate::store::Lake;

/// How often the catalog looks for new tables.
#[derive(Debug, Clone)]
pub struct LakeCatalogOptions {
    /// Interval of the background refresh (new tables, new commits of the tables known).
    pub refresh_interval: Duration,
}

impl Default for LakeCatalogOptions {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(2),
        }
    }
}

/// The `shop` catalog over one lake.
#[derive(Debug)]
pub struct LakeCatalog {
    schemas: BTreeMap<String, Arc<LakeSchema>>,
    options: LakeCatalogOptions,
}

impl LakeCatalog {
    /// A catalog over `lake`; call [`refresh`](Self::refresh) once before serving.
    pub fn new(lake: Lake, options: LakeCatalogOptions) -> Arc<Self> {
        let schemas = layout::SCHEMAS
            .iter()
            .map(|name| {
                let schema = LakeSchema {
                    lake: lake.clone(),
                    name: name.to_string(),
                    tables: RwLock::default(),
                    warned: std::sync::Mutex::default(),
                };
                (name.to_string(), Arc::new(schema))
            })
            .collect();
        Arc::new(Self { schemas, options })
    }

    /// Re-reads every schema's tables from the lake.
    pub async fn refresh(&self) -> Result<()> {
        for schema in self.schemas.values() {
            schema.refresh().await?;
        }
        Ok(())
    }

    /// Refreshes in the background every `refresh_interval` until the catalog is dropped or the
    /// returned handle is aborted.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.options.refresh_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(catalog) = weak.upgrade() else { break };
                if let Err(e) = catalog.refresh().await {
                    tracing::warn!(cause = %e, "lake catalog refresh failed; keeping the tables known so far");
                }
            }
        })
    }
}

impl CatalogProvider for LakeCatalog {
    fn schema_names(&self) -> Vec<String> {
        layout::SCHEMAS.iter().map(|s| s.to_string()).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas
            .get(name)
            .map(|s| Arc::clone(s) as Arc<dyn SchemaProvider>)
    }
}

#[derive(Debug)]
struct LoadedTable {
    provider: Arc<dyn TableProvider>,
    /// The version of the log the provider reads.
    version: u64,
    /// The table's state, brought up to date from its log before each query.
    delta: Arc<tokio::sync::Mutex<DeltaTable>>,
}

/// How every Delta table is scanned: plain `Utf8`/`Binary` (clients cannot read view types) and
/// partition values as their own type, not dictionary-encoded.
fn delta_scan_config() -> DeltaScanConfig {
    DeltaScanConfig {
        file_column_name: None,
        wrap_partition_values: false,
        enable_parquet_pushdown: true,
        schema_force_view_types: false,
        schema: None,
    }
}

/// A loaded Delta table: its provider reads the snapshot the table is at.
fn delta_loaded(dir: &Path, table: DeltaTable) -> Result<Arc<LoadedTable>> {
    let (version, provider) = delta_scan(dir, &table, None)?;
    Ok(delta_entry(
        version,
        provider,
        Arc::new(tokio::sync::Mutex::new(table)),
    ))
}

/// The version `table` is at and a provider reading it: `previous` when it reads that version
/// already.
fn delta_scan(
    dir: &Path,
    table: &DeltaTable,
    previous: Option<&LoadedTable>,
) -> Result<(u64, Arc<dyn TableProvider>)> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(dir, e))?;
    let version = snapshot.version();
    if let Some(previous) = previous.filter(|p| p.version == version) {
        return Ok((version, Arc::clone(&previous.provider)));
    }
    let scan = DeltaScanNext::new(snapshot.snapshot().clone(), delta_scan_config())?;
    Ok((version, Arc::new(scan)))
}

fn delta_entry(
    version: u64,
    provider: Arc<dyn TableProvider>,
    state: Arc<tokio::sync::Mutex<DeltaTable>>,
) -> Arc<LoadedTable> {
    Arc::new(LoadedTable {
        provider,
        version,
        delta: state,
    })
}

/// Brings a loaded Delta table up to its latest commit: reads only the commits after the
/// version it is at (or the newest checkpoint), and rebuilds the provider when one was found.
async fn delta_refreshed(dir: &Path, loaded: &LoadedTable) -> Result<Arc<LoadedTable>> {
    let state = Arc::clone(&loaded.delta);
    let mut table = state.lock().await;
    table
        .update_incremental(None)
        .await
        .map_err(|e| Error::delta(dir, e))?;
    let (version, provider) = delta_scan(dir, &table, Some(loaded))?;
    drop(table);
    Ok(delta_entry(version, provider, state))
}

/// One schema: its tables are the table-named folders below it that hold a Delta table.
#[derive(Debug)]
pub struct LakeSchema {
    lake: Lake,
    name: String,
    tables: RwLock<BTreeMap<String, Arc<LoadedTable>>>,
    /// Folders named in a warning already (data files without a Delta log).
    warned: std::sync::Mutex<BTreeSet<String>>,
}

impl LakeSchema {
    /// Lists the schema's table folders and (re)loads the tables that changed.
    pub async fn refresh(&self) -> Result<()> {
        let prefix = Path::from(self.name.as_str());
        let listing = self
            .lake
            .store()
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| Error::store(&prefix, e))?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| layout::is_table_name(n) && !n.ends_with(layout::DEAD_LETTER_SUFFIX))
            .collect();
        // Dead letters of `<table>` (in `<schema>/_rejected/<table>/`) are `<table>_rejected`.
        let dead_letters = prefix.clone().join(layout::DEAD_LETTERS);
        let listing = self
            .lake
            .store()
            .list_with_delimiter(Some(&dead_letters))
            .await
            .map_err(|e| Error::store(&dead_letters, e))?;
        names.extend(
            listing
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename())
                .filter(|n| layout::is_table_name(n))
                .map(|n| format!("{n}{}", layout::DEAD_LETTER_SUFFIX)),
        );
        let mut fresh = BTreeMap::new();
        for name in names {
            let previous = self.cached(&name);
            match self.load(&name, previous.as_deref()).await {
                Ok(Some(table)) => {
                    fresh.insert(name, table);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(schema = %self.name, table = %name, cause = %e, "cannot load table");
                    if let Some(previous) = previous {
                        fresh.insert(name, previous);
                    }
                }
            }
        }
        *self.tables.write().expect("catalog lock poisoned") = fresh;
        Ok(())
    }

    fn cached(&self, name: &str) -> Option<Arc<LoadedTable>> {
        self.tables
            .read()
            .expect("catalog lock poisoned")
            .get(name)
            .cloned()
    }

    /// Loads `name`, or brings `previous` up to date. `None` when the folder holds no Delta
    /// table.
    async fn load(
        &self,
        name: &str,
        previous: Option<&LoadedTable>,
    ) -> Result<Option<Arc<LoadedTable>>> {
        let dir = self.table_dir(name);
        if let Some(previous) = previous {
            return delta_refreshed(&dir, previous).await.map(Some);
        }
        if let Some(table) = self.lake.open_delta(&dir).await? {
            return delta_loaded(&dir, table).map(Some);
        }
        self.warn_old_layout(name, &dir).await;
        Ok(None)
    }

    /// Names a folder that holds Parquet files but no Delta log, once.
    async fn warn_old_layout(&self, name: &str, dir: &Path) {
        if self.warned.lock().expect("lock poisoned").contains(name) {
            return;
        }
        let mut listing = self.lake.store().list(Some(dir));
        while let Some(Ok(meta)) = futures::StreamExt::next(&mut listing).await {
            if meta.location.filename().is_some_and(layout::is_data_file) {
                tracing::warn!(
                    table = %format!("{}.{name}", self.name),
                    folder = %dir,
                    "this folder holds Parquet files but no Delta log (a lake from before the \
                     move to Delta Lake); it is not served (`lake convert` is not built yet: \
                     write the table again into a new lake, see docs/LAKE.md)"
                );
                self.warned
                    .lock()
                    .expect("lock poisoned")
                    .insert(name.to_string());
                return;
            }
        }
    }

    /// The folder of table `name`: `<schema>/<name>`, or for dead letters (`<table>_rejected`)
    /// `<schema>/_rejected/<table>`.
    fn table_dir(&self, name: &str) -> Path {
        match name.strip_suffix(layout::DEAD_LETTER_SUFFIX) {
            Some(table) => layout::dead_letter_dir(&self.name, table),
            None => layout::table_dir(&self.name, name),
        }
    }
}

#[async_trait]
impl SchemaProvider for LakeSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables
            .read()
            .expect("catalog lock poisoned")
            .keys()
            .cloned()
            .collect()
    }

    async fn table(&self, name: &str) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.cached(name) {
            // A table serves its latest commit to every query.
            let fresh = delta_refreshed(&self.table_dir(name), &table)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let provider = Arc::clone(&fresh.provider);
            self.tables
                .write()
                .expect("catalog lock poisoned")
                .insert(name.to_string(), fresh);
            return Ok(Some(provider));
        }
        if !layout::is_table_name(name) {
            return Ok(None);
        }
        // Not seen by the refresher yet: look now, so a brand-new table is queryable at once.
        let loaded = self
            .load(name, None)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(loaded.map(|table| {
            let provider = Arc::clone(&table.provider);
            self.tables
                .write()
                .expect("catalog lock poisoned")
                .insert(name.to_string(), table);
            provider
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables
            .read()
            .expect("catalog lock poisoned")
            .contains_key(name)
    }
}

#[cfg(test)]
mod delta_tests {
    use super::*;
    use crate::delta::{CommitInfo, Mode};
    use crate::store::LakeConfig;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(ids: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_delta_table_is_served_with_every_commit_visible_to_the_next_query() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&LakeConfig {
            root: dir.path().display().to_string(),
            ..Default::default()
        })
        .unwrap();
        let table = layout::table_dir(layout::STAGE, "t");
        let append = |ids: Vec<i64>| {
            let lake = lake.clone();
            let table = table.clone();
            async move {
                lake.write_delta(
                    &table,
                    &[],
                    vec![batch(ids)],
                    Mode::Append,
                    CommitInfo::default(),
                )
                .await
                .unwrap()
            }
        };
        append(vec![1, 2]).await;
        // A long refresh interval: only the per-query update can show the next commit.
        let catalog = LakeCatalog::new(
            lake.clone(),
            LakeCatalogOptions {
                refresh_interval: Duration::from_secs(3600),
            },
        );
        catalog.refresh().await.unwrap();
        let ctx = crate::session::context(
            crate::session::session_config(),
            crate::session::runtime(&lake),
            &catalog,
        );
        let count = |ctx: datafusion::prelude::SessionContext| async move {
            let frame = ctx.sql("SELECT id, name FROM shop.stage.t").await.unwrap();
            let schema = frame.schema().inner().clone();
            let rows: usize = frame
                .collect()
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum();
            (schema, rows)
        };
        let (schema, rows) = count(ctx.clone()).await;
        assert_eq!(rows, 2);
        // Clients cannot read view types: text is served as Utf8.
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        append(vec![3]).await;
        assert_eq!(count(ctx.clone()).await.1, 3);
        lake.write_delta(
            &table,
            &[],
            vec![batch(vec![9])],
            Mode::Overwrite,
            CommitInfo::default(),
        )
        .await
        .unwrap();
        assert_eq!(count(ctx).await.1, 1);
    }
}
