//! The `shop` catalog: schemas `stage` and `analytics`, whose tables are the folders of the lake.
//!
//! Table discovery runs in the background ([`LakeCatalog::spawn_refresher`]) because DataFusion
//! asks for table names synchronously; a table that is referenced before the refresher has seen
//! it is also loaded on demand. Two kinds of table:
//! - *snapshot tables* have a `_manifest.json`; the table reads exactly the files it lists, and is
//!   rebuilt when the manifest version changes;
//! - *append tables* read every Parquet file below their folder, with Hive partitions
//!   (`dt=YYYY-MM-DD` as a `Date32` column). New files are visible to the next query, since the
//!   listing happens at every scan.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::layout;
use crate::store::Lake;

/// How often the catalog looks for new tables and manifests.
#[derive(Debug, Clone)]
pub struct LakeCatalogOptions {
    /// Interval of the background refresh (new tables, new manifest versions).
    pub refresh_interval: Duration,
    /// How long an append table's inferred schema is trusted before it is inferred again.
    pub schema_ttl: Duration,
}

impl Default for LakeCatalogOptions {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(2),
            schema_ttl: Duration::from_secs(30),
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
        let state = inference_state(&lake);
        let schemas = layout::SCHEMAS
            .iter()
            .map(|name| {
                let schema = LakeSchema {
                    lake: lake.clone(),
                    name: name.to_string(),
                    options: options.clone(),
                    state: state.clone(),
                    tables: RwLock::default(),
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

/// The session DataFusion uses to infer table schemas: it sees only the lake.
fn inference_state(lake: &Lake) -> SessionState {
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(lake.registry())
        .build_arc()
        .expect("a runtime with default settings builds");
    SessionStateBuilder::new()
        .with_config(SessionConfig::new())
        .with_runtime_env(runtime)
        .with_default_features()
        .build()
}

/// What a loaded table was built from; when it changes, the table is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Append {
        partitions: Vec<String>,
    },
    /// A Delta table at this version of its log.
    Delta {
        version: u64,
    },
}

#[derive(Debug)]
struct LoadedTable {
    provider: Arc<dyn TableProvider>,
    source: Source,
    loaded_at: Instant,
    /// A Delta table's state, brought up to date from its log before each query.
    delta: Option<Arc<tokio::sync::Mutex<DeltaTable>>>,
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
    if let Some(previous) = previous.filter(|p| p.source == Source::Delta { version }) {
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
        source: Source::Delta { version },
        loaded_at: Instant::now(),
        delta: Some(state),
    })
}

/// Brings a loaded Delta table up to its latest commit: reads only the commits after the
/// version it is at (or the newest checkpoint), and rebuilds the provider when one was found.
async fn delta_refreshed(dir: &Path, loaded: &LoadedTable) -> Result<Arc<LoadedTable>> {
    let state = Arc::clone(loaded.delta.as_ref().expect("a Delta table has its state"));
    let mut table = state.lock().await;
    table
        .update_incremental(None)
        .await
        .map_err(|e| Error::delta(dir, e))?;
    let (version, provider) = delta_scan(dir, &table, Some(loaded))?;
    drop(table);
    Ok(delta_entry(version, provider, state))
}

/// One schema (`stage` or `analytics`): its tables are the table-named folders below it.
#[derive(Debug)]
pub struct LakeSchema {
    lake: Lake,
    name: String,
    options: LakeCatalogOptions,
    state: SessionState,
    tables: RwLock<BTreeMap<String, Arc<LoadedTable>>>,
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

    /// Loads `name`, reusing `previous` when its source has not changed. `None` when the folder
    /// holds no data file yet.
    async fn load(
        &self,
        name: &str,
        previous: Option<&LoadedTable>,
    ) -> Result<Option<Arc<LoadedTable>>> {
        let dir = self.table_dir(name);
        if let Some(previous) = previous.filter(|p| p.delta.is_some()) {
            return delta_refreshed(&dir, previous).await.map(Some);
        }
        if let Some(table) = self.lake.open_delta(&dir).await? {
            return delta_loaded(&dir, table).map(Some);
        }
        let Some(partitions) = self.partition_columns(&dir).await? else {
            return Ok(None);
        };
        let source = Source::Append {
            partitions: partitions.clone(),
        };
        if let Some(previous) = previous
            .filter(|p| p.source == source && p.loaded_at.elapsed() < self.options.schema_ttl)
        {
            return Ok(Some(Arc::new(LoadedTable {
                provider: Arc::clone(&previous.provider),
                source,
                loaded_at: previous.loaded_at,
                delta: None,
            })));
        }
        let url = data_files_in(&dir)?;
        let config =
            ListingTableConfig::new(url).with_listing_options(listing_options(&partitions));
        let provider = self.build(config).await?;
        Ok(provider.map(|provider| {
            Arc::new(LoadedTable {
                provider,
                source,
                loaded_at: Instant::now(),
                delta: None,
            })
        }))
    }

    /// The folder of table `name`: `<schema>/<name>`, or for dead letters (`<table>_rejected`)
    /// `<schema>/_rejected/<table>`.
    fn table_dir(&self, name: &str) -> Path {
        match name.strip_suffix(layout::DEAD_LETTER_SUFFIX) {
            Some(table) => layout::dead_letter_dir(&self.name, table),
            None => layout::table_dir(&self.name, name),
        }
    }

    /// Infers the file schema and builds the table. A partition column that the files also
    /// store (`analytics` tables keep `dt` in the file, first) is read from the files.
    async fn build(&self, config: ListingTableConfig) -> Result<Option<Arc<dyn TableProvider>>> {
        let config = config.infer_schema(&self.state).await?;
        let (Some(file_schema), Some(options)) =
            (config.file_schema.clone(), config.options.clone())
        else {
            return Ok(None);
        };
        if file_schema.fields().is_empty() {
            // No data file yet: the table appears with its first file.
            return Ok(None);
        }
        let partitions: Vec<String> = options
            .table_partition_cols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| file_schema.field_with_name(name).is_err())
            .collect();
        let config = ListingTableConfig::new_with_multi_paths(config.table_paths)
            .with_listing_options(listing_options(&partitions))
            .with_schema(file_schema);
        Ok(Some(Arc::new(ListingTable::try_new(config)?)))
    }

    /// Hive partition columns, found by following the first `key=value` folder at each level.
    /// `None` when the folder holds nothing at all (no such table).
    async fn partition_columns(&self, dir: &Path) -> Result<Option<Vec<String>>> {
        let mut columns = Vec::new();
        let mut current = dir.clone();
        for _ in 0..4 {
            let listing = self
                .lake
                .store()
                .list_with_delimiter(Some(&current))
                .await
                .map_err(|e| Error::store(&current, e))?;
            if columns.is_empty()
                && listing.objects.is_empty()
                && listing.common_prefixes.is_empty()
            {
                return Ok(None);
            }
            let next = listing.common_prefixes.iter().find_map(|p| {
                let segment = p.filename()?;
                let (key, _) = layout::partition_segment(segment)?;
                Some((key.to_string(), p.clone()))
            });
            match next {
                Some((key, path)) => {
                    columns.push(key);
                    current = path;
                }
                None => break,
            }
        }
        Ok(Some(columns))
    }
}

/// [`layout::is_data_file`] as a glob, for DataFusion's listing.
fn data_file_pattern() -> glob::Pattern {
    glob::Pattern::new("[!_.]*.parquet").expect("a valid pattern")
}

/// The data files below `folder`. Names starting with `_` or `.` are manifests, dead letters and
/// uploads in flight. With DataFusion's default of ignoring subfolders that are not `key=value`
/// partitions, the pattern applies to file names in the folder or in partition folders, and any
/// other folder (`_rejected/`, `.tmp/`) is skipped.
fn data_files_in(folder: &Path) -> Result<ListingTableUrl> {
    let url = url::Url::parse(&format!("{}/", Lake::url_of(folder)))
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(ListingTableUrl::try_new(url, Some(data_file_pattern()))?)
}

/// Listing options of every lake table: Parquet without view types (clients cannot read
/// `Utf8View`), `dt` partitions as dates, other partitions as text.
fn listing_options(partitions: &[String]) -> ListingOptions {
    let format = ParquetFormat::default().with_force_view_types(false);
    ListingOptions::new(Arc::new(format))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partitions
                .iter()
                .map(|p| {
                    let ty = if p == "dt" {
                        DataType::Date32
                    } else {
                        DataType::Utf8
                    };
                    (p.clone(), ty)
                })
                .collect(),
        )
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
            if table.delta.is_none() {
                return Ok(Some(Arc::clone(&table.provider)));
            }
            // A Delta table serves its latest commit to every query.
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
    use arrow::datatypes::{Field, Schema};

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
                schema_ttl: Duration::from_secs(3600),
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
