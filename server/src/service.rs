//! The Flight SQL service: statements, prepared statements and metadata over the lake.
//!
//! Statement and prepared-statement handles are stateless: a handle carries the SQL text and,
//! once parameters are bound with `DoPut`, the parameter batch (Arrow IPC), so any server can
//! answer any handle. For clients that keep using the handle they got from
//! `CreatePreparedStatement` after binding, the last bound parameters are also remembered by the
//! handle's id, in a bounded table.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, StreamWriter,
};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetTablesBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::catalog::CatalogProvider;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use shop_lake::layout;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::error::Error;
use crate::metadata::{self, SQL_INFO, TABLE_TYPE, TABLE_TYPES, XDBC_TYPES};
use crate::query::{Engine, Planned};

/// Bound parameter sets remembered by handle id.
const MAX_BOUND: usize = 10_000;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// A statement handle: the SQL, its bound parameters, and an id.
#[derive(Clone, PartialEq, Message)]
struct Handle {
    #[prost(string, tag = "1")]
    sql: String,
    /// Arrow IPC stream of the bound parameter batch; empty when none are bound.
    #[prost(bytes = "vec", tag = "2")]
    params: Vec<u8>,
    #[prost(uint64, tag = "3")]
    id: u64,
}

impl Handle {
    fn decode_from(bytes: &[u8]) -> Result<Self, Error> {
        Handle::decode(bytes).map_err(|_| {
            Error::InvalidRequest(
                "the statement handle is not one this server issued; prepare the statement again"
                    .into(),
            )
        })
    }
}

/// Parameters bound to prepared statements, by handle id, oldest first.
#[derive(Debug, Default)]
struct BoundParams {
    by_id: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

/// The Flight SQL implementation.
#[derive(Debug)]
pub struct SqlService {
    engine: Arc<Engine>,
    auth: Arc<Authenticator>,
    bound: Mutex<BoundParams>,
}

impl SqlService {
    pub fn new(engine: Arc<Engine>, auth: Arc<Authenticator>) -> Self {
        Self {
            engine,
            auth,
            bound: Mutex::default(),
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn remember(&self, id: u64, params: Vec<u8>) {
        let mut bound = self.bound.lock().expect("bound lock poisoned");
        if bound.by_id.insert(id, params).is_none() {
            bound.order.push_back(id);
        }
        while bound.order.len() > MAX_BOUND {
            if let Some(old) = bound.order.pop_front() {
                bound.by_id.remove(&old);
            }
        }
    }

    fn forget(&self, id: u64) {
        let mut bound = self.bound.lock().expect("bound lock poisoned");
        if bound.by_id.remove(&id).is_some() {
            bound.order.retain(|x| *x != id);
        }
    }

    /// The parameters of a handle: carried in it, or remembered for its id.
    fn params_of(&self, handle: &Handle) -> Result<Option<RecordBatch>, Error> {
        let bytes = if handle.params.is_empty() {
            let guard = self.bound.lock().expect("bound lock poisoned");
            match guard.by_id.get(&handle.id) {
                Some(bytes) if handle.id != 0 => bytes.clone(),
                _ => return Ok(None),
            }
        } else {
            handle.params.clone()
        };
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        match batches.as_slice() {
            [] => Ok(None),
            [first, ..] => Ok(Some(arrow::compute::concat_batches(
                &first.schema(),
                &batches,
            )?)),
        }
    }

    async fn stream_query(&self, handle: Handle) -> Result<Response<DoGetStream>, Status> {
        let params = self.params_of(&handle)?;
        let (schema, batches) = self.engine.execute(&handle.sql, params.as_ref()).await?;
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(Arc::clone(&schema))
            .build(batches.map_err(|e| FlightError::Tonic(Box::new(Status::from(e)))))
            .map_err(Status::from);
        let every = self.engine.idle_keepalive();
        Ok(Response::new(keep_alive(Box::pin(flight), &schema, every)))
    }

    /// The schema a command's result will have, without running it (for `GetSchema`).
    pub async fn schema_of(&self, descriptor: &FlightDescriptor) -> Result<Arc<Schema>, Status> {
        let any = Any::decode(&*descriptor.cmd).map_err(|_| {
            Error::InvalidRequest("the descriptor holds no Flight SQL command".into())
        })?;
        let command = Command::try_from(any).map_err(Error::Arrow)?;
        Ok(match command {
            Command::CommandStatementQuery(q) => self.engine.plan(&q.query).await?.wire_schema(),
            Command::CommandPreparedStatementQuery(q) => {
                let handle = Handle::decode_from(&q.prepared_statement_handle)?;
                self.engine.plan(&handle.sql).await?.wire_schema()
            }
            Command::CommandGetCatalogs(q) => q.into_builder().schema(),
            Command::CommandGetDbSchemas(q) => q.into_builder().schema(),
            Command::CommandGetTables(q) => q.into_builder().schema(),
            Command::CommandGetTableTypes(q) => q.into_builder().schema(),
            Command::CommandGetSqlInfo(q) => q.into_builder(&SQL_INFO).schema(),
            Command::CommandGetXdbcTypeInfo(q) => q.into_builder(&XDBC_TYPES).schema(),
            Command::CommandGetPrimaryKeys(_) => metadata::primary_keys_schema(),
            Command::CommandGetImportedKeys(_)
            | Command::CommandGetExportedKeys(_)
            | Command::CommandGetCrossReference(_) => metadata::foreign_keys_schema(),
            other => {
                return Err(Error::Unsupported(format!(
                    "GetSchema is not supported for {}",
                    other.type_url()
                ))
                .into());
            }
        })
    }

    async fn tables_batch(&self, query: CommandGetTables) -> Result<RecordBatch, Status> {
        let mut builder: GetTablesBuilder = query.into_builder();
        let catalog = self.engine.catalog();
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                let Some(table) = schema.table(&name).await.map_err(Error::Query)? else {
                    continue;
                };
                let with_meta = metadata::schema_with_column_metadata(
                    &table.schema(),
                    layout::CATALOG,
                    &schema_name,
                    &name,
                );
                builder
                    .append(layout::CATALOG, &schema_name, &name, TABLE_TYPE, &with_meta)
                    .map_err(Error::from)?;
            }
        }
        Ok(builder.build().map_err(Error::from)?)
    }
}

/// Sends an empty record batch whenever `inner` has been silent for `every` after its first
/// message (the schema), so that proxies and load balancers do not close a stream whose query is
/// still working. The arrow-flight encoder drops empty batches, and clients reject messages
/// without an IPC header, so the empty batch is encoded here, once.
fn keep_alive(inner: DoGetStream, schema: &SchemaRef, every: Duration) -> DoGetStream {
    let empty = IpcDataGenerator::default()
        .encode(
            &RecordBatch::new_empty(Arc::clone(schema)),
            &mut DictionaryTracker::new(false),
            &IpcWriteOptions::default(),
            &mut IpcWriteContext::default(),
        )
        .map(|(_, batch)| FlightData::from(batch));
    let Ok(empty) = empty else {
        return inner;
    };
    Box::pin(futures::stream::unfold(
        (inner, false),
        move |(mut inner, started)| {
            let empty = empty.clone();
            async move {
                if !started {
                    let first = inner.next().await?;
                    return Some((first, (inner, true)));
                }
                // Dropping `next()` on a timeout is safe: the stream keeps its own state.
                match tokio::time::timeout(every, inner.next()).await {
                    Ok(item) => item.map(|item| (item, (inner, true))),
                    Err(_) => Some((Ok(empty), (inner, true))),
                }
            }
        },
    ))
}

/// A `FlightInfo` with one endpoint whose ticket is `ticket` (served by this same server).
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(Error::Arrow)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// A `FlightInfo` for a metadata command: the ticket is the command itself.
fn metadata_info(
    schema: &Schema,
    command: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(schema, command.as_any().encode_to_vec(), descriptor)
}

fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Error> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into()?;
    Ok(bytes)
}

fn read_only(what: &str) -> Status {
    Error::Forbidden(format!(
        "{what} is not allowed: this server is read-only and runs queries only"
    ))
    .into()
}

fn key_filter<'a>(
    catalog: &'a Option<String>,
    schema: &'a Option<String>,
    table: &'a str,
) -> (Option<&'a str>, Option<&'a str>, &'a str) {
    (catalog.as_deref(), schema.as_deref(), table)
}

#[tonic::async_trait]
impl FlightSqlService for SqlService {
    type FlightService = SqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let token = self.auth.handshake(request.metadata())?;
        let payload = token.clone().unwrap_or_default().into_bytes();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: payload.into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("the issued token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let planned: Planned = self.engine.plan(&query.query).await?;
        let handle = Handle {
            sql: query.query,
            params: Vec::new(),
            id: 0,
        };
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode_to_vec().into(),
        };
        flight_info(
            &planned.wire_schema(),
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = Handle::decode_from(&cmd.prepared_statement_handle)?;
        let planned = self.engine.plan(&handle.sql).await?;
        flight_info(
            &planned.wire_schema(),
            cmd.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Error::Unsupported("Substrait plans are not supported; send SQL".into()).into())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&query.into_builder().schema(), query, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &query.clone().into_builder().schema(),
            query,
            request.into_inner(),
        )
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &query.clone().into_builder().schema(),
            query,
            request.into_inner(),
        )
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&query.into_builder().schema(), query, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &query.clone().into_builder(&SQL_INFO).schema(),
            query,
            request.into_inner(),
        )
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &metadata::primary_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &metadata::foreign_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &metadata::foreign_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(
            &metadata::foreign_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&XDBC_TYPES.schema(), query, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_query(Handle::decode_from(&ticket.statement_handle)?)
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_query(Handle::decode_from(&query.prepared_statement_handle)?)
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder: GetCatalogsBuilder = query.into_builder();
        builder.append(layout::CATALOG);
        Ok(batch_stream(builder.build().map_err(Error::from)?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for schema in layout::SCHEMAS {
            builder.append(layout::CATALOG, schema);
        }
        Ok(batch_stream(builder.build().map_err(Error::from)?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(self.tables_batch(query).await?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in TABLE_TYPES {
            builder.append(table_type);
        }
        Ok(batch_stream(builder.build().map_err(Error::from)?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(
            query.into_builder(&SQL_INFO).build().map_err(Error::from)?,
        ))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let batch = metadata::primary_keys(
            query.catalog.as_deref(),
            query.db_schema.as_deref(),
            &query.table,
        )
        .map_err(Error::Arrow)?;
        Ok(batch_stream(batch))
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let pk = key_filter(&query.catalog, &query.db_schema, &query.table);
        Ok(batch_stream(
            metadata::foreign_keys(Some(pk), None).map_err(Error::Arrow)?,
        ))
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let fk = key_filter(&query.catalog, &query.db_schema, &query.table);
        Ok(batch_stream(
            metadata::foreign_keys(None, Some(fk)).map_err(Error::Arrow)?,
        ))
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let pk = key_filter(&query.pk_catalog, &query.pk_db_schema, &query.pk_table);
        let fk = key_filter(&query.fk_catalog, &query.fk_db_schema, &query.fk_table);
        Ok(batch_stream(
            metadata::foreign_keys(Some(pk), Some(fk)).map_err(Error::Arrow)?,
        ))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        Ok(batch_stream(
            query
                .into_builder(&XDBC_TYPES)
                .build()
                .map_err(Error::from)?,
        ))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("bulk ingestion"))
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = Handle::decode_from(&query.prepared_statement_handle)?;
        let stream = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .map_err(|e| Error::InvalidRequest(format!("cannot read the bound parameters: {e}")))?;
        let Some(first) = batches.first() else {
            return Err(Error::InvalidRequest("DoPut carried no parameter batch".into()).into());
        };
        let schema = first.schema();
        let mut params = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut params, &schema).map_err(Error::Arrow)?;
            for batch in &batches {
                writer.write(batch).map_err(Error::Arrow)?;
            }
            writer.finish().map_err(Error::Arrow)?;
        }
        if handle.id != 0 {
            self.remember(handle.id, params.clone());
        }
        let bound = Handle { params, ..handle };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.encode_to_vec().into()),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Error::Unsupported("Substrait plans are not supported; send SQL".into()).into())
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let planned = self.engine.plan(&query.query).await?;
        let dataset_schema = ipc_schema(&planned.wire_schema())?;
        let parameter_schema = ipc_schema(&planned.parameter_schema()?)?;
        let handle = Handle {
            sql: query.query,
            params: Vec::new(),
            id: rand::random::<u64>().max(1),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode_to_vec().into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        let handle = Handle::decode_from(&query.prepared_statement_handle)?;
        self.forget(handle.id);
        Ok(())
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        Err(Error::Unsupported(format!(
            "the action {:?} is not supported by this server",
            request.get_ref().r#type
        ))
        .into())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
