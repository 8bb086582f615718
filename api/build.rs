//! Generates the gRPC code of `proto/shop/v1` with the protoc of `protoc-bin-vendored` (building
//! needs no system protoc), the descriptor set that gRPC reflection serves, and the serde
//! implementations of the proto3 JSON mapping (pbjson) that the REST gateway speaks.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("shop_v1_descriptor.bin");
    let protos: Vec<PathBuf> = [
        "purchase_event.proto",
        "product_service.proto",
        "purchase_service.proto",
        "seller_service.proto",
    ]
    .iter()
    .map(|name| PathBuf::from("../proto/shop/v1").join(name))
    .collect();
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The well-known types come from pbjson-types, which carries their JSON mapping
        // (Timestamp as RFC 3339, Struct as an object).
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, &protos, &[PathBuf::from("../proto"), include])?;
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        // JSON keys are the proto field names (snake_case), as in the Kafka contract and SQL.
        .preserve_proto_field_names()
        // Every field is in the JSON, also at its default (0, "", false), as REST clients expect.
        .emit_fields()
        .build(&[".shop.v1"])?;
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    Ok(())
}
