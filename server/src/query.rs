//! Planning and running one query within the server's limits.
//!
//! Every query gets its own DataFusion session whose memory pool is capped at
//! [`Limits::memory_per_query`] (sorts and aggregations spill to disk before they fail), holds one
//! of [`Limits::max_concurrent_queries`] permits while its result streams, and is stopped at
//! [`Limits::query_timeout`]. Results are streamed batch by batch: dropping the stream (a client
//! that disconnects or cancels) drops the DataFusion plan and stops its work.

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use futures::{Stream, StreamExt, TryStreamExt};
use shop_lake::{Lake, LakeCatalog, session};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::Error;
use crate::guard;

/// Resource limits applied to every query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory one query may hold before it spills or fails (bytes).
    pub memory_per_query: usize,
    /// Wall-clock time from planning to the last batch.
    pub query_timeout: Duration,
    /// Queries running at once; further queries are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_queries: usize,
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
            query_timeout: Duration::from_secs(300),
            max_concurrent_queries: 8,
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
    limits: Limits,
    permits: Arc<Semaphore>,
}

/// A planned query: the session it was planned in and its logical plan.
pub struct Planned {
    ctx: SessionContext,
    plan: LogicalPlan,
}

impl Planned {
    /// The schema the client receives (no view types).
    pub fn wire_schema(&self) -> SchemaRef {
        wire_schema(self.plan.schema().as_arrow())
    }

    /// The query's parameters, `$1, $2, …` in numeric order, typed where DataFusion can infer
    /// the type from the context (`Null` where it cannot).
    pub fn parameter_schema(&self) -> Result<Schema, Error> {
        let types = self.plan.get_parameter_types().map_err(Error::Query)?;
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
}

impl Engine {
    pub fn new(lake: &Lake, catalog: Arc<LakeCatalog>, limits: Limits) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_concurrent_queries.max(1)));
        Self {
            catalog,
            registry: lake.registry(),
            limits,
            permits,
        }
    }

    /// How long a result stream may stay silent before a keep-alive batch is sent.
    pub fn idle_keepalive(&self) -> Duration {
        self.limits.idle_keepalive
    }

    pub fn catalog(&self) -> &Arc<LakeCatalog> {
        &self.catalog
    }

    /// A fresh session with this query's own memory pool.
    fn session(&self) -> SessionContext {
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(self.limits.memory_per_query),
            NonZeroUsize::new(3).expect("non-zero"),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::clone(&self.registry))
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .expect("a runtime with a memory pool builds");
        session::context(session::session_config(), runtime, &self.catalog)
    }

    /// Checks and plans `sql` without running it.
    pub async fn plan(&self, sql: &str) -> Result<Planned, Error> {
        let statement: DfStatement = guard::check(sql)?;
        let ctx = self.session();
        let planning = async {
            let plan = ctx
                .state()
                .statement_to_plan(statement)
                .await
                .map_err(Error::Query)?;
            SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false)
                .verify_plan(&plan)
                .map_err(|e| Error::Forbidden(format!("{e}: this server is read-only")))?;
            Ok::<_, Error>(plan)
        };
        let plan = tokio::time::timeout(self.limits.query_timeout, planning)
            .await
            .map_err(|_| Error::Timeout(self.limits.query_timeout))??;
        Ok(Planned { ctx, plan })
    }

    /// Runs `sql`, once per row of `params` when given, and streams the results in the wire
    /// schema. The stream holds a concurrency permit until it ends or is dropped.
    pub async fn execute(
        &self,
        sql: &str,
        params: Option<&RecordBatch>,
    ) -> Result<(SchemaRef, ResultStream), Error> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| Error::Busy(self.limits.max_concurrent_queries))?;
        let deadline = Instant::now() + self.limits.query_timeout;
        let planned = self.plan(sql).await?;
        let schema = planned.wire_schema();
        let expected = planned.parameter_schema()?;
        let rows = match params {
            Some(batch) if batch.num_rows() > 0 => parameter_rows(batch, &expected)?,
            _ if expected.fields().is_empty() => vec![ParamValues::List(vec![])],
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "the query has {} parameter(s) but no values were bound",
                    expected.fields().len()
                )));
            }
        };
        let Planned { ctx, plan } = planned;
        let out_schema = Arc::clone(&schema);
        let runs = futures::stream::iter(rows).then(move |values| {
            let ctx = ctx.clone();
            let plan = plan.clone();
            async move {
                let plan = plan.with_param_values(values).map_err(Error::Query)?;
                let frame = ctx.execute_logical_plan(plan).await.map_err(Error::Query)?;
                let stream = frame.execute_stream().await.map_err(Error::Query)?;
                Ok::<_, Error>(stream.map_err(Error::Query))
            }
        });
        let batches = runs.try_flatten().and_then(move |batch| {
            let schema = Arc::clone(&out_schema);
            async move { to_wire(&batch, &schema) }
        });
        let limited = limit(
            batches.boxed(),
            Guard {
                _permit: permit,
                deadline,
                timeout: self.limits.query_timeout,
                max_rows: self.limits.max_result_rows,
                max_bytes: self.limits.max_result_bytes,
                rows: 0,
                bytes: 0,
            },
        );
        Ok((schema, limited))
    }
}

/// What a running result is allowed, and what it has used.
struct Guard {
    _permit: OwnedSemaphorePermit,
    deadline: Instant,
    timeout: Duration,
    max_rows: Option<u64>,
    max_bytes: Option<u64>,
    rows: u64,
    bytes: u64,
}

/// Ends `inner` with an error at the deadline or when the result grows past its limits.
fn limit(inner: ResultStream, guard: Guard) -> ResultStream {
    futures::stream::unfold(Some((inner, guard)), |state| async move {
        let (mut inner, mut guard) = state?;
        let next = tokio::time::timeout_at(guard.deadline, inner.next()).await;
        let item = match next {
            Err(_) => Err(Error::Timeout(guard.timeout)),
            Ok(None) => return None,
            Ok(Some(Err(e))) => Err(e),
            Ok(Some(Ok(batch))) => {
                guard.rows += batch.num_rows() as u64;
                guard.bytes += batch.get_array_memory_size() as u64;
                match (guard.max_rows, guard.max_bytes) {
                    (Some(max), _) if guard.rows > max => {
                        Err(Error::ResultTooLarge(format!("{max} rows")))
                    }
                    (_, Some(max)) if guard.bytes > max => {
                        Err(Error::ResultTooLarge(format!("{max} bytes")))
                    }
                    _ => Ok(batch),
                }
            }
        };
        // After an error the stream ends (and releases its permit).
        let state = item.is_ok().then_some((inner, guard));
        Some((item, state))
    })
    .boxed()
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
