//! The OpenAPI 3.1 description of the REST gateway, generated from the protobuf descriptors of
//! `proto/shop/v1` (messages, fields and their comments) and the route table below, so that the
//! document cannot drift from the messages the gateway decodes.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use serde_json::{Map, Value, json};

/// How a route takes its request message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// One field from the path, named by the `{…}` segment.
    Path,
    /// Every field as a query parameter.
    Query,
    /// The message as the JSON body.
    Body,
    /// The path's field, the rest as the JSON body.
    PathAndBody,
}

/// One REST route and the RPC it calls.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    /// `Service/Method` of package `shop.v1`.
    pub rpc: &'static str,
    pub input: Input,
    /// HTTP status of success.
    pub success: u16,
}

/// Every API route of the gateway (`rest::router` serves exactly these; a test holds them
/// together).
pub const ROUTES: [Route; 9] = [
    Route {
        method: "get",
        path: "/v1/products/{product_id}",
        rpc: "ProductService/GetProduct",
        input: Input::Path,
        success: 200,
    },
    Route {
        method: "get",
        path: "/v1/products",
        rpc: "ProductService/ListProducts",
        input: Input::Query,
        success: 200,
    },
    Route {
        method: "post",
        path: "/v1/purchases",
        rpc: "PurchaseService/CreatePurchase",
        input: Input::Body,
        success: 201,
    },
    Route {
        method: "get",
        path: "/v1/purchases/{purchase_id}",
        rpc: "PurchaseService/GetPurchase",
        input: Input::Path,
        success: 200,
    },
    Route {
        method: "get",
        path: "/v1/purchases",
        rpc: "PurchaseService/ListPurchases",
        input: Input::Query,
        success: 200,
    },
    Route {
        method: "post",
        path: "/v1/sellers",
        rpc: "SellerService/CreateSeller",
        input: Input::Body,
        success: 201,
    },
    Route {
        method: "get",
        path: "/v1/sellers/{seller_id}",
        rpc: "SellerService/GetSeller",
        input: Input::Path,
        success: 200,
    },
    Route {
        method: "get",
        path: "/v1/sellers",
        rpc: "SellerService/ListSellers",
        input: Input::Query,
        success: 200,
    },
    Route {
        method: "patch",
        path: "/v1/sellers/{seller_id}",
        rpc: "SellerService/UpdateSeller",
        input: Input::PathAndBody,
        success: 200,
    },
];

/// The errors every route may answer, with the gRPC codes behind them.
const ERRORS: [(&str, &str); 8] = [
    (
        "400",
        "INVALID_ARGUMENT: a field is invalid; the message names it",
    ),
    (
        "401",
        "UNAUTHENTICATED: authentication is on and the credentials are missing or wrong",
    ),
    ("404", "NOT_FOUND: an id that does not exist"),
    (
        "409",
        "ALREADY_EXISTS: an idempotency key reused for a different request",
    ),
    (
        "412",
        "FAILED_PRECONDITION: a backend is not configured or the data is not loaded yet",
    ),
    ("429", "RESOURCE_EXHAUSTED"),
    ("500", "INTERNAL"),
    (
        "503",
        "UNAVAILABLE: PostgreSQL or Kafka did not answer in time; retry",
    ),
];

struct Descriptors {
    files: Vec<FileDescriptorProto>,
}

impl Descriptors {
    fn shop_files(&self) -> impl Iterator<Item = &FileDescriptorProto> {
        self.files
            .iter()
            .filter(|f| f.package.as_deref() == Some("shop.v1"))
    }

    fn message(&self, full_name: &str) -> Option<(&FileDescriptorProto, usize, &DescriptorProto)> {
        let name = full_name.strip_prefix(".shop.v1.")?;
        self.shop_files().find_map(|file| {
            file.message_type
                .iter()
                .enumerate()
                .find(|(_, m)| m.name() == name)
                .map(|(i, m)| (file, i, m))
        })
    }

    /// `(input, output, comment)` of `Service/Method`.
    fn method(&self, rpc: &str) -> Option<(String, String, String)> {
        let (service, method) = rpc.split_once('/')?;
        self.shop_files().find_map(|file| {
            let (si, s) = file
                .service
                .iter()
                .enumerate()
                .find(|(_, s)| s.name() == service)?;
            let (mi, m) = s
                .method
                .iter()
                .enumerate()
                .find(|(_, m)| m.name() == method)?;
            Some((
                m.input_type().to_string(),
                m.output_type().to_string(),
                comment(file, &[6, si as i32, 2, mi as i32]),
            ))
        })
    }
}

/// The leading comment of the element at `path` (see `SourceCodeInfo`), tidied.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn field_schema(field: &prost_types::FieldDescriptorProto) -> Value {
    let scalar = match field.r#type() {
        Type::Int64 | Type::Sint64 | Type::Sfixed64 | Type::Uint64 | Type::Fixed64 => {
            json!({"type": ["string", "integer"], "format": "int64"})
        }
        Type::Int32 | Type::Sint32 | Type::Sfixed32 | Type::Uint32 | Type::Fixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Bool => json!({"type": "boolean"}),
        Type::String => json!({"type": "string"}),
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Enum => json!({"type": "string"}),
        Type::Message | Type::Group => match field.type_name() {
            ".google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
            ".google.protobuf.Struct" => json!({"type": "object"}),
            other => {
                let name = other.rsplit('.').next().unwrap_or(other);
                json!({"$ref": format!("#/components/schemas/{name}")})
            }
        },
    };
    if field.label() == Label::Repeated {
        json!({"type": "array", "items": scalar})
    } else {
        scalar
    }
}

fn with_description(mut schema: Value, description: String) -> Value {
    if !description.is_empty() {
        schema["description"] = Value::String(description);
    }
    schema
}

fn message_schema(file: &FileDescriptorProto, index: usize, message: &DescriptorProto) -> Value {
    let mut properties = Map::new();
    for (fi, field) in message.field.iter().enumerate() {
        let doc = comment(file, &[4, index as i32, 2, fi as i32]);
        properties.insert(
            field.name().to_string(),
            with_description(field_schema(field), doc),
        );
    }
    with_description(
        json!({"type": "object", "additionalProperties": false, "properties": properties}),
        comment(file, &[4, index as i32]),
    )
}

/// The OpenAPI document.
pub fn document() -> Value {
    let set = FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
        .expect("the build's own descriptor set decodes");
    let descriptors = Descriptors { files: set.file };
    let mut schemas = Map::new();
    for file in descriptors.shop_files() {
        for (i, message) in file.message_type.iter().enumerate() {
            schemas.insert(message.name().to_string(), message_schema(file, i, message));
        }
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "The gRPC status code, e.g. INVALID_ARGUMENT."},
                "message": {"type": "string", "description": "What is wrong; names the field for INVALID_ARGUMENT."}
            },
            "required": ["code", "message"]
        }),
    );
    let mut paths = Map::new();
    for route in ROUTES {
        let (input, output, doc) = descriptors
            .method(route.rpc)
            .unwrap_or_else(|| panic!("{} is in proto/shop/v1", route.rpc));
        let (file, index, request) = descriptors
            .message(&input)
            .unwrap_or_else(|| panic!("{input} is in proto/shop/v1"));
        let path_field = route
            .path
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(name, _)| name);
        let mut parameters = Vec::new();
        for (fi, field) in request.field.iter().enumerate() {
            let doc = comment(file, &[4, index as i32, 2, fi as i32]);
            let location = if Some(field.name()) == path_field {
                "path"
            } else if route.input == Input::Query {
                "query"
            } else {
                continue;
            };
            parameters.push(json!({
                "name": field.name(),
                "in": location,
                "required": location == "path",
                "schema": field_schema(field),
                "description": doc,
            }));
        }
        if route.rpc == "PurchaseService/CreatePurchase" {
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "schema": {"type": "string"},
                "description": "The same as the body's idempotency_key."
            }));
        }
        let output_name = output.rsplit('.').next().unwrap_or(&output).to_string();
        let mut responses = Map::new();
        responses.insert(
            route.success.to_string(),
            json!({
                "description": "Success.",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{output_name}")}}}
            }),
        );
        if route.rpc == "PurchaseService/CreatePurchase" {
            responses.insert(
                "200".into(),
                json!({
                    "description": "A retry of an earlier request with the same idempotency key: its purchase, replayed = true.",
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{output_name}")}}}
                }),
            );
        }
        for (status, text) in ERRORS {
            responses.insert(
                status.into(),
                json!({
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                }),
            );
        }
        let mut operation = json!({
            "operationId": route.rpc.replace('/', "."),
            "summary": route.rpc,
            "description": format!("{doc} (gRPC: shop.v1.{})", route.rpc),
            "tags": [route.rpc.split('/').next().unwrap_or("")],
            "parameters": parameters,
            "responses": responses,
        });
        if matches!(route.input, Input::Body | Input::PathAndBody) {
            let name = input.rsplit('.').next().unwrap_or(&input);
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}
            });
        }
        paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object")
            .insert(route.method.to_string(), operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "shop-analytics shop API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Products, purchases and sellers: the REST/JSON form of the gRPC services \
                of proto/shop/v1, served on the same data. JSON follows the proto3 JSON mapping: keys \
                are the proto field names, int64 values are strings in answers (numbers are accepted \
                in requests), times are RFC 3339. Authentication, when the server has users, is HTTP \
                Basic or the bearer token of the Flight SQL handshake."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"}
            }
        },
        "security": [{}, {"basic": []}, {"bearer": []}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_messages_and_comments() {
        let doc = document();
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.method];
            assert_eq!(op["summary"], route.rpc, "{}", route.path);
            assert!(
                op["responses"][route.success.to_string()].is_object(),
                "{}",
                route.path
            );
        }
        let product = &doc["components"]["schemas"]["Product"]["properties"];
        assert_eq!(product["product_id"]["format"], "int64");
        assert_eq!(product["created_at"]["format"], "date-time");
        assert!(
            product["price"]["description"]
                .as_str()
                .unwrap()
                .contains("2 decimals"),
            "comments from the .proto become descriptions"
        );
        let list = &doc["paths"]["/v1/products"]["get"]["parameters"];
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "category",
                "seller_id",
                "min_price",
                "max_price",
                "page_size",
                "page_token"
            ]
        );
        let update = &doc["paths"]["/v1/sellers/{seller_id}"]["patch"];
        assert_eq!(update["parameters"][0]["in"], "path");
        assert_eq!(
            update["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/UpdateSellerRequest"
        );
    }
}
