//! Planning and running one query within the server's limits.
//!
//! Every query is planned in its own copy of one template session and executes with a runtime
//! of its own whose memory pool is capped at [`Limits::memory_per_query`] (sorts and
//! aggregations spill to disk, up to [`Limits::spill_per_query`], before they fail). It holds
//! one of [`Limits::max_concurrent_queries`] permits from before it is parsed until its result
//! ends. Parsing, planning and execution run on the [`QueryExecutor`], never on the runtime that
//! serves the network; the query's task is aborted at [`Limits::query_timeout`] by a watchdog
//! whether or not the client still reads, and when the client goes away. Results are streamed
//! batch by batch through a small channel.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::TaskContext;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use futures::{Stream, StreamExt};
use shop_lake::{Lake, LakeCatalog, session};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::Error;
use crate::executor::{QueryExecutor, QueryTask, TaskEnd};
use crate::{functions, guard};

/// Resource limits applied to every query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory one query may hold before it spills or fails (bytes).
    pub memory_per_query: usize,
    /// Disk one query may fill with spill files before it fails (bytes).
    pub spill_per_query: u64,
    /// Largest value one call of a function that makes large values (`repeat`, `lpad`,
    /// `array_repeat`, `range`, …) may produce for one batch (bytes).
    pub max_function_output: u64,
    /// Wall-clock time from parsing to the last batch.
    pub query_timeout: Duration,
    /// Queries planned or running at once; further queries wait in the queue.
    pub max_concurrent_queries: usize,
    /// Queries that may wait for a slot (their wait counts in [`Limits::query_timeout`]); beyond
    /// them a query is refused with RESOURCE_EXHAUSTED at once. 0: refuse instead of waiting.
    pub max_queued_queries: usize,
    /// Rows one result may have (`None`: unlimited).
    pub max_result_rows: Option<u64>,
    /// In-memory bytes one result may have (`None`: unlimited).
    pub max_result_bytes: Option<u64>,
    /// While a query produces nothing for this long, an empty batch is sent so that proxies and
    /// load balancers keep the stream open.
    pub idle_keepalive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_per_query: 2 << 30,
            spill_per_query: 8 << 30,
            max_function_output: 64 << 20,
            query_timeout: Duration::from_secs(300),
            max_concurrent_queries: 8,
            max_queued_queries: 64,
            max_result_rows: None,
            max_result_bytes: Some(8 << 30),
            idle_keepalive: Duration::from_secs(5),
        }
    }
}

/// A stream of result batches in the wire schema.
pub type ResultStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, Error>> + Send>>;

/// Plans and runs queries over the lake.
#[derive(Debug)]
pub struct Engine {
    catalog: Arc<LakeCatalog>,
    registry: Arc<dyn ObjectStoreRegistry>,
    /// The session every query is planned in: the lake's catalog, the bounded functions and the
    /// extra optimizer rule, built once (building one per query cost about a millisecond). Each
    /// query plans in a copy with its own start time for `now()`, and executes with a runtime of
    /// its own (memory pool and spill budget), see [`Engine::query_runtime`].
    template: Arc<SessionState>,
    limits: Limits,
    permits: Arc<Semaphore>,
    /// Queries waiting for a permit now.
    queued: Arc<AtomicUsize>,
    executor: Arc<QueryExecutor>,
    running: Arc<Running>,
}

/// The queries in flight, so that they can be cancelled together.
#[derive(Debug, Default)]
struct Running {
    next_id: AtomicU64,
    stopping: AtomicBool,
    tasks: Mutex<HashMap<u64, AbortHandle>>,
}

/// Removes a query from [`Running`] when its task ends or is aborted.
struct Registration {
    running: Arc<Running>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running
            .tasks
            .lock()
            .expect("running lock")
            .remove(&self.id);
    }
}

/// What `GetFlightInfo`, `GetSchema` and `CreatePreparedStatement` need of a planned query.
#[derive(Debug)]
pub struct Described {
    /// The schema the client receives (no view types).
    pub schema: SchemaRef,
    /// The query's parameters, `$1, $2, …` in numeric order (an error for other placeholders).
    pub parameters: Result<Schema, Error>,
}

/// The query's parameters, `$1, $2, …` in numeric order, typed where DataFusion can infer the
/// type from the context (`Null` where it cannot).
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Error> {
    let types = plan.get_parameter_types().map_err(Error::Query)?;
    let mut params: Vec<(usize, String, DataType)> = types
        .into_iter()
        .map(|(name, ty)| {
            let index = name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "placeholder {name} is not supported: use $1, $2, … or ?"
                    ))
                })?;
            Ok((index, name, ty.unwrap_or(DataType::Null)))
        })
        .collect::<Result<_, Error>>()?;
    params.sort_by_key(|(index, _, _)| *index);
    Ok(Schema::new(
        params
            .into_iter()
            .map(|(_, name, ty)| Field::new(name, ty, true))
            .collect::<Vec<_>>(),
    ))
}

/// Makes every operator of a plan yield to the scheduler between batches.
///
/// A task can only be aborted (at its deadline, when its client goes away, at shutdown) when it
/// yields. DataFusion's own `EnsureCooperative` makes scans yield, but an operator that produces
/// many batches from one input batch (a cross join, a nested-loop join, an unnest) and the
/// operators above it never poll a scan again and so never yield: a timed-out cross join went on
/// burning a core for minutes. Wrapping every operator that has inputs in a `CooperativeExec`
/// (tokio's task budget, about 128 batches) bounds the work between two yields, whatever the
/// shape of the plan. It runs last, after every other physical optimisation.
#[derive(Debug)]
struct YieldBetweenBatches;

impl PhysicalOptimizerRule for YieldBetweenBatches {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let wrap = !node.children().is_empty() && !node.is::<CooperativeExec>();
            Ok(if wrap {
                Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>)
            } else {
                Transformed::no(node)
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "YieldBetweenBatches"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Checks `sql` against the read-only policy and plans it.
async fn plan(state: &SessionState, sql: &str) -> Result<LogicalPlan, Error> {
    let statement = guard::check(sql)?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(Error::Query)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| Error::Forbidden(format!("{e}: this server is read-only")))?;
    Ok(plan)
}

impl Engine {
    /// An engine whose queries run on `executor`.
    pub fn new(
        lake: &Lake,
        catalog: Arc<LakeCatalog>,
        limits: Limits,
        executor: Arc<QueryExecutor>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_concurrent_queries.max(1)));
        // Planning reads Parquet footers through the caches of this long-lived runtime, so
        // DataFusion's footer cache (50 MiB) now serves every query, not one. An entry is used
        // while the file's size and modification time are unchanged; lake files are written
        // once under new names, except `system.refresh_runs` records, which are rewritten in
        // place once, with other values and so another size. The listing cache stays off.
        let runtime = session::runtime(lake);
        let ctx = session::context(session::session_config(), runtime, &catalog);
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_physical_optimizer_rule(Arc::new(YieldBetweenBatches))
            .build();
        let ctx = SessionContext::new_with_state(state);
        functions::register_bounded(&ctx, limits.max_function_output);
        Self {
            catalog,
            registry: lake.registry(),
            template: Arc::new(ctx.state()),
            limits,
            permits,
            queued: Arc::default(),
            executor,
            running: Arc::default(),
        }
    }

    /// How long a result stream may stay silent before a keep-alive batch is sent.
    pub fn idle_keepalive(&self) -> Duration {
        self.limits.idle_keepalive
    }

    pub fn catalog(&self) -> &Arc<LakeCatalog> {
        &self.catalog
    }

    /// Queries planned or running now.
    pub fn running(&self) -> usize {
        self.limits.max_concurrent_queries.max(1) - self.permits.available_permits()
    }

    /// Refuses new queries from now on, ends the waiting ones and aborts every query in flight
    /// (at its next yield).
    pub fn cancel_all(&self) {
        self.running.stopping.store(true, Ordering::SeqCst);
        self.permits.close();
        let tasks = self.running.tasks.lock().expect("running lock");
        for task in tasks.values() {
            task.abort();
        }
        if !tasks.is_empty() {
            tracing::warn!(queries = tasks.len(), "cancelled the running queries");
        }
    }

    /// The state a query is planned in: a copy of the template whose clock starts now.
    fn query_state(&self) -> SessionState {
        let mut state = SessionState::clone(&self.template);
        state.mark_start_execution();
        state
    }

    /// The runtime a query executes with: its own memory pool and spill budget.
    fn query_runtime(&self) -> Result<Arc<RuntimeEnv>, Error> {
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(self.limits.memory_per_query),
            NonZeroUsize::new(3).expect("non-zero"),
        );
        RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::clone(&self.registry))
            .with_memory_pool(Arc::new(pool))
            .with_max_temp_directory_size(self.limits.spill_per_query)
            .build_arc()
            .map_err(Error::Query)
    }

    /// A permit: at once when one is free, else after waiting in the queue until `deadline`
    /// ([`Error::Timeout`]). [`Error::Busy`] at once when the queue is full too.
    async fn permit(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, Error> {
        if self.running.stopping.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
        let _place = QueuePlace(Arc::clone(&self.queued));
        if waiting >= self.limits.max_queued_queries {
            return Err(Error::Busy {
                running: self.limits.max_concurrent_queries,
                queued: self.limits.max_queued_queries,
            });
        }
        match tokio::time::timeout_at(deadline, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) if !self.running.stopping.load(Ordering::SeqCst) => Ok(permit),
            // Closed by `cancel_all`.
            Ok(_) => Err(Error::ShuttingDown),
            Err(_) => Err(Error::Timeout(self.limits.query_timeout)),
        }
    }

    /// Runs `work` on the query executor until the query's deadline.
    fn spawn<T, F>(&self, deadline: Instant, work: F) -> QueryTask<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let id = self.running.next_id.fetch_add(1, Ordering::Relaxed);
        let registration = Registration {
            running: Arc::clone(&self.running),
            id,
        };
        let task = self.executor.spawn(deadline, async move {
            let _registration = registration;
            work.await
        });
        let mut tasks = self.running.tasks.lock().expect("running lock");
        tasks.retain(|_, t| !t.is_finished());
        tasks.insert(id, task.abort_handle());
        task
    }

    fn task_error(&self, end: TaskEnd) -> Error {
        task_error(end, self.limits.query_timeout, &self.running)
    }

    /// Checks and plans `sql` without running it, within the concurrency and time limits.
    pub async fn describe(&self, sql: &str) -> Result<Described, Error> {
        let deadline = Instant::now() + self.limits.query_timeout;
        let permit = self.permit(deadline).await?;
        let state = self.query_state();
        let sql = sql.to_owned();
        let task = self.spawn(deadline, async move {
            let _permit = permit;
            let plan = plan(&state, &sql).await?;
            Ok::<_, Error>(Described {
                schema: wire_schema(plan.schema().as_arrow()),
                parameters: parameter_schema(&plan),
            })
        });
        task.await.map_err(|end| self.task_error(end))?
    }

    /// Runs `sql`, once per row of `params` when given, and streams the results in the wire
    /// schema. The query holds a concurrency permit until its stream ends or is dropped.
    pub async fn execute(
        &self,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<(SchemaRef, ResultStream), Error> {
        let deadline = Instant::now() + self.limits.query_timeout;
        let permit = self.permit(deadline).await?;
        let state = self.query_state();
        let runtime = self.query_runtime()?;
        let sql = sql.to_owned();
        let mut budget = Budget {
            max_rows: self.limits.max_result_rows,
            max_bytes: self.limits.max_result_bytes,
            rows: 0,
            bytes: 0,
        };
        // Two batches in flight: the producer stays just ahead of a client that reads.
        let (batches_tx, batches_rx) = mpsc::channel::<Result<RecordBatch, Error>>(2);
        let (schema_tx, schema_rx) = oneshot::channel::<Result<SchemaRef, Error>>();
        let mut task = self.spawn(deadline, async move {
            let _permit = permit;
            let (schema, mut batches) = match start(state, runtime, &sql, params).await {
                Ok(started) => started,
                Err(e) => {
                    let _ = schema_tx.send(Err(e));
                    return;
                }
            };
            if schema_tx.send(Ok(Arc::clone(&schema))).is_err() {
                return;
            }
            while let Some(item) = batches.next().await {
                let item = item.and_then(|batch| budget.spend(to_wire(&batch, &schema)?));
                let failed = item.is_err();
                // A closed channel: the client went away.
                if batches_tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        let schema = match schema_rx.await {
            Ok(started) => started?,
            // The task ended without a word: it timed out, was cancelled or panicked.
            Err(_) => {
                return Err(match (&mut task).await {
                    Ok(()) => Error::Internal("the query ended before it started".into()),
                    Err(end) => self.task_error(end),
                });
            }
        };
        let timeout = self.limits.query_timeout;
        let running = Arc::clone(&self.running);
        let stream = futures::stream::unfold(Some((batches_rx, task)), move |state| {
            let running = Arc::clone(&running);
            async move {
                let (mut rx, mut task) = state?;
                match rx.recv().await {
                    Some(Ok(batch)) => Some((Ok(batch), Some((rx, task)))),
                    Some(Err(e)) => Some((Err(e), None)),
                    // The producer ended: normally, or aborted (deadline, cancel) or panicked.
                    None => match (&mut task).await {
                        Ok(()) => None,
                        Err(end) => Some((Err(task_error(end, timeout, &running)), None)),
                    },
                }
            }
        });
        Ok((schema, stream.boxed()))
    }
}

/// A query's place in the queue, given up when it gets its permit or stops waiting.
struct QueuePlace(Arc<AtomicUsize>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error of a query task that ended without its value.
fn task_error(end: TaskEnd, timeout: Duration, running: &Running) -> Error {
    match end {
        TaskEnd::TimedOut => Error::Timeout(timeout),
        TaskEnd::Cancelled if running.stopping.load(Ordering::SeqCst) => Error::ShuttingDown,
        TaskEnd::Cancelled => Error::Cancelled("the query was cancelled".into()),
        TaskEnd::Panicked(message) => {
            tracing::error!(%message, "a query task panicked");
            Error::Internal("the query failed because of a server bug; it is logged".into())
        }
    }
}

/// Plans `sql` and starts it: the wire schema and the batches of every parameter row in turn.
async fn start(
    state: SessionState,
    runtime: Arc<RuntimeEnv>,
    sql: &str,
    params: Option<RecordBatch>,
) -> Result<(SchemaRef, ResultStream), Error> {
    let plan = plan(&state, sql).await?;
    let schema = wire_schema(plan.schema().as_arrow());
    let expected = parameter_schema(&plan)?;
    let rows = match &params {
        Some(batch) if batch.num_rows() > 0 => parameter_rows(batch, &expected)?,
        _ if expected.fields().is_empty() => vec![ParamValues::List(vec![])],
        _ => {
            return Err(Error::InvalidRequest(format!(
                "the query has {} parameter(s) but no values were bound",
                expected.fields().len()
            )));
        }
    };
    // Every parameter row runs in the same state (one start time) and with the same task context
    // and runtime (one memory pool, one spill budget): one query.
    let task = Arc::new(TaskContext::from(&state).with_runtime(runtime));
    let state = Arc::new(state);
    let runs = futures::stream::iter(rows).then(move |values| {
        let state = Arc::clone(&state);
        let task = Arc::clone(&task);
        let plan = plan.clone();
        async move {
            let plan = plan.with_param_values(values).map_err(Error::Query)?;
            let physical = state
                .create_physical_plan(&plan)
                .await
                .map_err(Error::Query)?;
            let stream = execute_stream(physical, task).map_err(Error::Query)?;
            Ok::<_, Error>(stream.map(|item| item.map_err(Error::Query)))
        }
    });
    let batches = futures::TryStreamExt::try_flatten(runs);
    Ok((schema, batches.boxed()))
}

/// What a result may still grow by.
struct Budget {
    max_rows: Option<u64>,
    max_bytes: Option<u64>,
    rows: u64,
    bytes: u64,
}

impl Budget {
    /// Counts `batch` against the limits.
    fn spend(&mut self, batch: RecordBatch) -> Result<RecordBatch, Error> {
        self.rows += batch.num_rows() as u64;
        self.bytes += batch.get_array_memory_size() as u64;
        match (self.max_rows, self.max_bytes) {
            (Some(max), _) if self.rows > max => Err(Error::ResultTooLarge(format!("{max} rows"))),
            (_, Some(max)) if self.bytes > max => {
                Err(Error::ResultTooLarge(format!("{max} bytes")))
            }
            _ => Ok(batch),
        }
    }
}

/// Turns each row of a bound parameter batch into positional values, cast to the types the
/// query expects where those are known (a Python int arrives as Int64 even for an Int32 column).
fn parameter_rows(batch: &RecordBatch, expected: &Schema) -> Result<Vec<ParamValues>, Error> {
    if batch.num_columns() != expected.fields().len() {
        return Err(Error::InvalidRequest(format!(
            "the query has {} parameter(s) but {} value(s) per row were bound",
            expected.fields().len(),
            batch.num_columns()
        )));
    }
    (0..batch.num_rows())
        .map(|row| {
            let values = batch
                .columns()
                .iter()
                .zip(expected.fields())
                .map(|(column, field)| {
                    let value = ScalarValue::try_from_array(column, row).map_err(Error::Query)?;
                    if field.data_type() == &DataType::Null
                        || value.data_type() == *field.data_type()
                    {
                        return Ok(value);
                    }
                    value.cast_to(field.data_type()).map_err(|e| {
                        Error::InvalidRequest(format!(
                            "parameter {} must be {}: {e}",
                            field.name(),
                            field.data_type()
                        ))
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(ParamValues::List(
                values.into_iter().map(Into::into).collect(),
            ))
        })
        .collect()
}

/// The schema sent to clients: view types replaced by their plain counterparts, at any depth.
pub fn wire_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema.fields().iter().map(wire_field).collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

fn wire_field(field: &FieldRef) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(wire_type(field.data_type())),
    )
}

fn wire_type(ty: &DataType) -> DataType {
    match ty {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::ListView(f) | DataType::List(f) => DataType::List(wire_field(f)),
        DataType::LargeListView(f) | DataType::LargeList(f) => DataType::LargeList(wire_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(wire_field(f), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(wire_field).collect::<Fields>())
        }
        DataType::Map(f, sorted) => DataType::Map(wire_field(f), *sorted),
        other => other.clone(),
    }
}

/// Casts a batch into the wire schema (a no-op for columns that already match).
pub fn to_wire(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, Error> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringViewArray};

    #[test]
    fn views_become_plain_types_at_any_depth() {
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("b", DataType::BinaryView, false),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true))),
                true,
            ),
            Field::new("d", DataType::Decimal128(12, 2), true),
        ]);
        let wire = wire_schema(&schema);
        assert_eq!(wire.field(0).data_type(), &DataType::Utf8);
        assert_eq!(wire.field(1).data_type(), &DataType::Binary);
        assert!(!wire.field(1).is_nullable());
        assert_eq!(
            wire.field(2).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
        assert_eq!(wire.field(3).data_type(), &DataType::Decimal128(12, 2));

        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)])),
            vec![Arc::new(StringViewArray::from(vec![Some("a"), None]))],
        )
        .unwrap();
        let wire = wire_schema(&batch.schema());
        let out = to_wire(&batch, &wire).unwrap();
        assert_eq!(out.schema(), wire);
        assert_eq!(out.column(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn parameters_are_cast_to_the_expected_types() {
        let expected = Schema::new(vec![
            Field::new("$1", DataType::Int32, true),
            Field::new("$2", DataType::Null, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("a", DataType::Int64, true),
                Field::new("b", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![10, 20])),
            ],
        )
        .unwrap();
        let rows = parameter_rows(&batch, &expected).unwrap();
        assert_eq!(rows.len(), 2);
        let ParamValues::List(values) = &rows[1] else {
            panic!("positional")
        };
        assert_eq!(values[0].value(), &ScalarValue::Int32(Some(2)));
        assert_eq!(values[1].value(), &ScalarValue::Int64(Some(20)));

        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, true)])),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        let err = parameter_rows(&one, &expected).unwrap_err();
        assert!(
            err.to_string().contains("2 parameter(s) but 1 value(s)"),
            "{err}"
        );
    }
}
