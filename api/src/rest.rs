//! The shop API as REST/JSON: the same service implementations as gRPC, behind the same
//! authentication, with the proto3 JSON mapping of the messages (snake_case keys, int64 as
//! strings on output and strings or numbers on input, times as RFC 3339).
//!
//! | method and path | RPC |
//! | --- | --- |
//! | `GET /v1/products/{product_id}` | `ProductService/GetProduct` |
//! | `GET /v1/products?category=&seller_id=&min_price=&max_price=&page_size=&page_token=` | `ProductService/ListProducts` |
//! | `POST /v1/purchases` (body; `Idempotency-Key` header) | `PurchaseService/CreatePurchase` |
//! | `GET /v1/purchases/{purchase_id}` | `PurchaseService/GetPurchase` |
//! | `GET /v1/purchases?customer_id=&from_time=&to_time=&page_size=&page_token=` | `PurchaseService/ListPurchases` |
//! | `POST /v1/sellers` (body) | `SellerService/CreateSeller` |
//! | `GET /v1/sellers/{seller_id}` | `SellerService/GetSeller` |
//! | `GET /v1/sellers?country=&page_size=&page_token=` | `SellerService/ListSellers` |
//! | `PATCH /v1/sellers/{seller_id}` (body) | `SellerService/UpdateSeller` |
//! | `GET /openapi.json` | the OpenAPI 3 description, generated from `proto/` |
//! | `GET /healthz` | `{"status": "SERVING"}` |
//!
//! Errors are `{"code": "INVALID_ARGUMENT", "message": "…"}` with the HTTP status of the gRPC
//! code (400, 401, 404, 409, 412, 429, 503, 500, …); a field that does not parse is named.

use std::sync::Arc;

use crate::pb::product_service_server::ProductService;
use crate::pb::purchase_service_server::PurchaseService;
use crate::pb::seller_service_server::SellerService;
use crate::pb::{
    CreatePurchaseRequest, CreateSellerRequest, GetProductRequest, GetPurchaseRequest,
    GetSellerRequest, ListProductsRequest, ListPurchasesRequest, ListSellersRequest,
    UpdateSellerRequest,
};
use crate::{ProductApi, PurchaseApi, SellerApi};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};

use shop_server::auth::{Authenticator, Permission};

/// Largest request body.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The services behind the gateway.
#[derive(Clone)]
pub struct Gateway {
    pub products: ProductApi,
    pub purchases: PurchaseApi,
    pub sellers: SellerApi,
    pub auth: Arc<Authenticator>,
    /// The OpenAPI document, rendered once.
    pub openapi: Arc<serde_json::Value>,
}

/// The routes of the gateway.
pub fn router(gateway: Gateway) -> Router {
    // Credentials are checked before anything of the request is read (path, body).
    let api = Router::new()
        .route("/v1/products", get(list_products))
        .route("/v1/products/{product_id}", get(get_product))
        .route("/v1/purchases", get(list_purchases).post(create_purchase))
        .route("/v1/purchases/{purchase_id}", get(get_purchase))
        .route("/v1/sellers", get(list_sellers).post(create_seller))
        .route(
            "/v1/sellers/{seller_id}",
            get(get_seller).patch(update_seller),
        )
        .route_layer(middleware::from_fn_with_state(gateway.clone(), authorize));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .merge(api)
        .fallback(|| async {
            ApiError::from(Status::not_found(
                "no such route: see /openapi.json for the API",
            ))
        })
        .method_not_allowed_fallback(|| async {
            ApiError::with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                Status::unimplemented("this method is not allowed on this path"),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::map_response(json_errors))
        .with_state(gateway)
}

/// axum's own rejections (a path that is not UTF-8, a body over the limit, …) are plain text:
/// they get the `{code, message}` form of every other error.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::Unimplemented,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        s if s.is_client_error() => Code::InvalidArgument,
        _ => Code::Internal,
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    ApiError::with_status(status, Status::new(code, message)).into_response()
}

/// An error response: the HTTP status, the gRPC code and the message.
pub struct ApiError {
    http: StatusCode,
    status: Status,
}

impl ApiError {
    fn with_status(http: StatusCode, status: Status) -> Self {
        Self { http, status }
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        Self {
            http: http_status(status.code()),
            status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "code": code_name(self.status.code()),
            "message": self.status.message(),
        });
        let mut response = (self.http, axum::Json(body)).into_response();
        if self.http == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"shop-analytics\""),
            );
        }
        response
    }
}

/// The HTTP status of a gRPC code, as Google's HTTP mapping has it (FAILED_PRECONDITION is 412
/// here, not 400, so that "load the catalogue first" is told apart from a bad field).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("valid status"),
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The canonical upper-case name of a gRPC code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

type Reply = Result<Response, ApiError>;

/// The middleware in front of every `/v1` route: the credentials of the gRPC port; reads need
/// the reader role, writes (POST, PATCH, …) the writer role.
async fn authorize(
    State(g): State<Gateway>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let need = if request.method().is_safe() {
        Permission::Read
    } else {
        Permission::Write
    };
    let peer = shop_server::auth::peer_ip(request.extensions());
    match g.auth.authorize(
        &MetadataMap::from_headers(request.headers().clone()),
        peer,
        need,
    ) {
        Ok(_) => next.run(request).await,
        Err(e) => ApiError::from(Status::from(e)).into_response(),
    }
}

fn json<T: Serialize>(status: StatusCode, message: &T) -> Response {
    (status, axum::Json(message)).into_response()
}

/// Decodes a message from JSON fields. Each field is decoded alone first, so that an error
/// names the field it is about.
fn decode<T: DeserializeOwned>(
    fields: serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<T, ApiError> {
    for (name, value) in &fields {
        let mut single = serde_json::Map::new();
        single.insert(name.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<T>(serde_json::Value::Object(single)) {
            return Err(ApiError::from(Status::invalid_argument(format!(
                "{name} ({what}): {e}"
            ))));
        }
    }
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| ApiError::from(Status::invalid_argument(format!("{what}: {e}"))))
}

/// The query string as JSON string fields; a repeated parameter is refused.
fn query_fields(
    raw: Option<String>,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let mut fields = serde_json::Map::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if fields
            .insert(
                key.to_string(),
                serde_json::Value::String(value.to_string()),
            )
            .is_some()
        {
            return Err(ApiError::from(Status::invalid_argument(format!(
                "{key} (query parameter) is given more than once"
            ))));
        }
    }
    Ok(fields)
}

/// The body as JSON fields: it must be one JSON object.
fn body_fields(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    // Required, not assumed: a browser's cross-site form post (text/plain, urlencoded) must
    // not reach a write, and those are the types a page may send without asking.
    let is_json = headers.get(header::CONTENT_TYPE).is_some_and(|kind| {
        kind.to_str()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    if !is_json {
        return Err(ApiError::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Status::invalid_argument(
                "the request body must be JSON, sent with Content-Type: application/json",
            ),
        ));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::from(Status::invalid_argument(
            "the request body must be a JSON object",
        ))),
        Err(e) => Err(ApiError::from(Status::invalid_argument(format!(
            "the request body is not JSON: {e}"
        )))),
    }
}

/// A path segment as an int64 id.
fn path_id(name: &str, text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::from(Status::invalid_argument(format!(
            "{name} {text:?} (path) is not an integer"
        )))
    })
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "SERVING"}))
}

async fn openapi(State(g): State<Gateway>) -> Response {
    json(StatusCode::OK, g.openapi.as_ref())
}

async fn get_product(State(g): State<Gateway>, Path(id): Path<String>) -> Reply {
    let request = GetProductRequest {
        product_id: path_id("product_id", &id)?,
    };
    let reply = g.products.get_product(Request::new(request)).await?;
    Ok(json(StatusCode::OK, reply.get_ref()))
}

async fn list_products(State(g): State<Gateway>, RawQuery(query): RawQuery) -> Reply {
    let request: ListProductsRequest = decode(query_fields(query)?, "query parameter")?;
    let reply = g.products.list_products(Request::new(request)).await?;
    Ok(json(StatusCode::OK, reply.get_ref()))
}

async fn create_purchase(State(g): State<Gateway>, headers: HeaderMap, body: Bytes) -> Reply {
    let mut request: CreatePurchaseRequest = decode(body_fields(&headers, &body)?, "body")?;
    if let Some(key) = headers.get("idempotency-key") {
        let key = key.to_str().map_err(|_| {
            ApiError::from(Status::invalid_argument(
                "Idempotency-Key (header) must be printable ASCII",
            ))
        })?;
        if !request.idempotency_key.is_empty() && request.idempotency_key != key {
            return Err(ApiError::from(Status::invalid_argument(
                "idempotency_key (body) and the Idempotency-Key header differ",
            )));
        }
        request.idempotency_key = key.to_string();
    }
    let reply = g.purchases.create_purchase(Request::new(request)).await?;
    let status = if reply.get_ref().replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, reply.get_ref()))
}

async fn get_purchase(State(g): State<Gateway>, Path(purchase_id): Path<String>) -> Reply {
    let reply = g
        .purchases
        .get_purchase(Request::new(GetPurchaseRequest { purchase_id }))
        .await?;
    Ok(json(StatusCode::OK, reply.get_ref()))
}

async fn list_purchases(State(g): State<Gateway>, RawQuery(query): RawQuery) -> Reply {
    let request: ListPurchasesRequest = decode(query_fields(query)?, "query parameter")?;
    let reply = g.purchases.list_purchases(Request::new(request)).await?;
    Ok(json(StatusCode::OK, reply.get_ref()))
}

async fn create_seller(State(g): State<Gateway>, headers: HeaderMap, body: Bytes) -> Reply {
    let request: CreateSellerRequest = decode(body_fields(&headers, &body)?, "body")?;
    let reply = g.sellers.create_seller(Request::new(request)).await?;
    Ok(json(StatusCode::CREATED, reply.get_ref()))
}

async fn get_seller(State(g): State<Gateway>, Path(id): Path<String>) -> Reply {
    let request = GetSellerRequest {
        seller_id: path_id("seller_id", &id)?,
    };
    let reply = g.sellers.get_seller(Request::new(request)).await?;
    Ok(json(StatusCode::OK, reply.get_ref()))
}

async fn list_sellers(State(g): State<Gateway>, RawQuery(query): RawQuery) -> Reply {
    let request: ListSellersRequest = decode(query_fields(query)?, "query parameter")?;
    let reply = g.sellers.list_sellers(Request::new(request)).await?;
    Ok(json(StatusCode::OK, reply.get_ref()))
}

async fn update_seller(
    State(g): State<Gateway>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let seller_id = path_id("seller_id", &id)?;
    let mut request: UpdateSellerRequest = decode(body_fields(&headers, &body)?, "body")?;
    if request.seller_id != 0 && request.seller_id != seller_id {
        return Err(ApiError::from(Status::invalid_argument(format!(
            "seller_id {} (body) differs from seller_id {seller_id} (path)",
            request.seller_id
        ))));
    }
    request.seller_id = seller_id;
    let reply = g.sellers.update_seller(Request::new(request)).await?;
    Ok(json(StatusCode::OK, reply.get_ref()))
}
