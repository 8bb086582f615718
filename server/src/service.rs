//! The Flight SQL service: statements, prepared statements and metadata over the lake.
//!
//! Statement and prepared-statement handles are stateless: a handle carries the SQL text and,
//! once parameters are bound with `DoPut`, the parameter batch (Arrow IPC). Handles are built by
//! the client's library from bytes this server sent, so each carries an HMAC under a key made
//! when the process starts: a handle that was changed, or made up, is refused with
//! INVALID_ARGUMENT before any of it is decoded, and the parameter bytes inside a handle are
//! always ones this server wrote. For clients that keep using the handle they got from
//! `CreatePreparedStatement` after binding, the last bound parameters are also remembered by the
//! handle's id, in a table bounded in entries and bytes.

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
use ring::hmac;
use shop_lake::layout;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::error::Error;
use crate::metadata::{self, SQL_INFO, TABLE_TYPE, TABLE_TYPES, XDBC_TYPES};
use crate::params;
use crate::query::Engine;

/// Bound parameter sets remembered by handle id.
const MAX_BOUND: usize = 10_000;
/// Bytes of bound parameters remembered in all.
const MAX_BOUND_BYTES: usize = 64 << 20;

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
    /// HMAC-SHA256 of the handle's encoding without this field.
    #[prost(bytes = "vec", tag = "4")]
    mac: Vec<u8>,
}

/// Signs and checks handles with a key of this process.
struct HandleKey(hmac::Key);

impl std::fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleKey(…)")
    }
}

impl HandleKey {
    fn random() -> Self {
        Self(hmac::Key::new(
            hmac::HMAC_SHA256,
            &rand::random::<[u8; 32]>(),
        ))
    }

    /// The handle's bytes, signed.
    fn seal(&self, mut handle: Handle) -> Vec<u8> {
        handle.mac.clear();
        let tag = hmac::sign(&self.0, &handle.encode_to_vec());
        handle.mac = tag.as_ref().to_vec();
        handle.encode_to_vec()
    }

    /// The handle in `bytes`, if this server signed it.
    fn open(&self, bytes: &[u8]) -> Result<Handle, Error> {
        let refused = || {
            Error::InvalidRequest(
                "the statement handle is not one this server issued (or the server restarted); \
                 prepare the statement again"
                    .into(),
            )
        };
        let mut handle = Handle::decode(bytes).map_err(|_| refused())?;
        // A decoder skips unknown fields and keeps the last of a repeated one, so other bytes can
        // decode to a signed handle: only the exact bytes `seal` wrote are accepted.
        if handle.encode_to_vec() != bytes {
            return Err(refused());
        }
        let mac = std::mem::take(&mut handle.mac);
        hmac::verify(&self.0, &handle.encode_to_vec(), &mac).map_err(|_| refused())?;
        Ok(handle)
    }
}

/// Parameters bound to prepared statements, by handle id, oldest first.
#[derive(Debug, Default)]
struct BoundParams {
    by_id: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
    bytes: usize,
}

/// The Flight SQL implementation.
#[derive(Debug)]
pub struct SqlService {
    engine: Arc<Engine>,
    auth: Arc<Authenticator>,
    bound: Mutex<BoundParams>,
    key: HandleKey,
}

impl SqlService {
    pub fn new(engine: Arc<Engine>, auth: Arc<Authenticator>) -> Self {
        Self {
            engine,
            auth,
            bound: Mutex::default(),
            key: HandleKey::random(),
        }
    }

    /// The query engine (for shutdown).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn remember(&self, id: u64, params: Vec<u8>) {
        let mut bound = self.bound.lock().expect("bound lock poisoned");
        let size = params.len();
        match bound.by_id.insert(id, params) {
            Some(old) => bound.bytes -= old.len(),
            None => bound.order.push_back(id),
        }
        bound.bytes += size;
        while bound.order.len() > MAX_BOUND || bound.bytes > MAX_BOUND_BYTES {
            let Some(old) = bound.order.pop_front() else {
                break;
            };
            if let Some(dropped) = bound.by_id.remove(&old) {
                bound.bytes -= dropped.len();
            }
        }
    }

    fn forget(&self, id: u64) {
        let mut bound = self.bound.lock().expect("bound lock poisoned");
        if let Some(dropped) = bound.by_id.remove(&id) {
            bound.bytes -= dropped.len();
            bound.order.retain(|x| *x != id);
        }
    }

    /// The parameters of a handle: carried in it, or remembered for its id. Either way the bytes
    /// are ones this server wrote (the handle is signed).
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
        let (schema, batches) = self.engine.execute(&handle.sql, params).await?;
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
            Command::CommandStatementQuery(q) => self.engine.describe(&q.query).await?.schema,
            Command::CommandPreparedStatementQuery(q) => {
                let handle = self.key.open(&q.prepared_statement_handle)?;
                self.engine.describe(&handle.sql).await?.schema
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

/// Refuses a ticket that is not exactly one this server put in a `FlightInfo`: it must decode
/// to a known Flight SQL command and encode back to the same bytes (so nothing was changed or
/// appended). Statement handles inside are, besides, signed.
pub fn check_ticket(bytes: &[u8]) -> Result<(), Error> {
    let refused = || {
        Error::InvalidRequest(
            "the ticket is not one this server issued; call GetFlightInfo again".into(),
        )
    };
    let any = Any::decode(bytes).map_err(|_| refused())?;
    if any.encode_to_vec() != bytes {
        return Err(refused());
    }
    let command = Command::try_from(any).map_err(|_| refused())?;
    if matches!(command, Command::Unknown(_)) || command.into_any().encode_to_vec() != bytes {
        return Err(refused());
    }
    Ok(())
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
        let peer = request.remote_addr().map(|addr| addr.ip());
        let token = self.auth.handshake(request.metadata(), peer)?;
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
        let described = self.engine.describe(&query.query).await?;
        let handle = Handle {
            sql: query.query,
            params: Vec::new(),
            id: 0,
            mac: Vec::new(),
        };
        let ticket = TicketStatementQuery {
            statement_handle: self.key.seal(handle).into(),
        };
        flight_info(
            &described.schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = self.key.open(&cmd.prepared_statement_handle)?;
        let described = self.engine.describe(&handle.sql).await?;
        flight_info(
            &described.schema,
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
        self.stream_query(self.key.open(&ticket.statement_handle)?)
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_query(self.key.open(&query.prepared_statement_handle)?)
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
        let handle = self.key.open(&query.prepared_statement_handle)?;
        let messages = params::read(request.into_inner()).await?;
        let batches = params::decode(&messages)?;
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
            prepared_statement_handle: Some(self.key.seal(bound).into()),
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
        let described = self.engine.describe(&query.query).await?;
        let dataset_schema = ipc_schema(&described.schema)?;
        let parameter_schema = ipc_schema(&described.parameters?)?;
        let handle = Handle {
            sql: query.query,
            params: Vec::new(),
            id: rand::random::<u64>().max(1),
            mac: Vec::new(),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self.key.seal(handle).into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        let handle = self.key.open(&query.prepared_statement_handle)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> Handle {
        Handle {
            sql: "SELECT 1".into(),
            params: Vec::new(),
            id: 42,
            mac: Vec::new(),
        }
    }

    #[test]
    fn handles_are_signed_and_checked() {
        let key = HandleKey::random();
        let sealed = key.seal(handle());
        let opened = key.open(&sealed).unwrap();
        assert_eq!((opened.sql.as_str(), opened.id), ("SELECT 1", 42));
        // Another process's key, a changed byte, a made-up handle: refused.
        assert!(HandleKey::random().open(&sealed).is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(key.open(&bad), Err(Error::InvalidRequest(_))),
                "byte {i}"
            );
        }
        assert!(key.open(&handle().encode_to_vec()).is_err());
        assert!(key.open(b"\xff\xff\xff").is_err());
        // Bytes that decode to the same handle are not the handle: an unknown field appended
        // (field 7, varint 1), or the SQL given twice (the decoder keeps the last).
        let mut appended = sealed.clone();
        appended.extend_from_slice(&[0x38, 0x01]);
        assert!(key.open(&appended).is_err());
        let mut twice = Handle {
            sql: "SELECT 2".into(),
            ..handle()
        }
        .encode_to_vec();
        twice.truncate(10);
        twice.extend_from_slice(&sealed);
        assert_eq!(Handle::decode(twice.as_slice()).unwrap().sql, "SELECT 1");
        assert!(key.open(&twice).is_err());
    }

    #[test]
    fn tickets_must_be_exactly_what_was_issued() {
        let key = HandleKey::random();
        let ticket = TicketStatementQuery {
            statement_handle: key.seal(handle()).into(),
        }
        .as_any()
        .encode_to_vec();
        check_ticket(&ticket).unwrap();
        let mut appended = ticket.clone();
        appended.extend_from_slice(&[0x28, 0x01]);
        assert!(check_ticket(&appended).is_err());
        let mut renamed = ticket.clone();
        let at = renamed.iter().position(|b| *b == b'T').unwrap();
        renamed[at] = b'X';
        assert!(check_ticket(&renamed).is_err());
        assert!(check_ticket(b"").is_err());
        assert!(check_ticket(&[0x0a, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
