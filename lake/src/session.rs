//! DataFusion sessions over the lake, shared by the query server and the analytics layer.

use std::sync::Arc;

use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::LakeCatalog;
use crate::layout;
use crate::store::Lake;

/// Session settings for lake queries: `shop.stage` is the default schema (so `purchases` means
/// `shop.stage.purchases`), `information_schema` is on for BI tools, and strings are plain
/// `Utf8` rather than `Utf8View`, which many Flight SQL clients cannot read.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(layout::CATALOG, layout::STAGE)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    let options = config.options_mut();
    options.execution.parquet.schema_force_view_types = false;
    options.sql_parser.map_string_types_to_utf8view = false;
    config
}

/// A runtime whose only object store is the lake, with default memory and disk settings.
///
/// DataFusion's cache of file listings is off: it keeps a listing forever by default, and a
/// runtime that lives long (the shop API's) would then never see the files an append table
/// (`stage.purchases`) gains after its first scan.
pub fn runtime(lake: &Lake) -> Arc<RuntimeEnv> {
    builder(lake)
        .build_arc()
        .expect("a runtime with default settings builds")
}

/// [`runtime`] with one memory pool of `bytes` shared by all its queries (they spill to disk or
/// fail with "resources exhausted" beyond it).
pub fn bounded_runtime(lake: &Lake, bytes: usize) -> Arc<RuntimeEnv> {
    builder(lake)
        .with_memory_pool(Arc::new(FairSpillPool::new(bytes)))
        .build_arc()
        .expect("a runtime with a memory pool builds")
}

fn builder(lake: &Lake) -> RuntimeEnvBuilder {
    RuntimeEnvBuilder::new()
        .with_object_store_registry(lake.registry())
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
}

/// A session that sees the `shop` catalog and nothing else.
pub fn context(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    catalog: &Arc<LakeCatalog>,
) -> SessionContext {
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog(layout::CATALOG.to_string(), Arc::clone(catalog) as _);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_catalog_list(catalogs)
        .with_default_features()
        .build();
    SessionContext::new_with_state(state)
}
