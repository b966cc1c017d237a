//! What is generated where: packages, cross-package paths and the build flags.

use std::path::Path;

fn write(dir: &Path, name: &str, src: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, src).unwrap();
}

fn two_packages() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app/common.proto",
        "syntax = \"proto3\";\npackage app.common;\nmessage Page { uint32 size = 1; message Cursor { string token = 1; } }\n",
    );
    write(
        dir.path(),
        "app/api.proto",
        r#"syntax = "proto3";
package app.api;
import "app/common.proto";
import "fluxon/options.proto";
import "google/protobuf/empty.proto";
service Catalog {
  rpc List(app.common.Page) returns (app.common.Page.Cursor) {
    option (fluxon.method) = { idempotent: true };
  }
  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty);
}
"#,
    );
    dir
}

#[test]
fn one_file_per_package_with_prost_paths_across_packages() {
    let dir = two_packages();
    let g = fluxon_codegen::configure()
        .generate(&[dir.path().join("app/api.proto")], &[dir.path()])
        .unwrap();
    let names: Vec<&str> = g.rust.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["app.api.rs", "app.common.rs"]);
    assert!(g.sql.is_empty(), "no models, no SQL");
    let api = &g.rust_file("app.api").unwrap().contents;
    assert!(
        api.contains("request: fluxon_server::Request<super::common::Page>,"),
        "{api}"
    );
    assert!(
        api.contains("Result<super::common::page::Cursor, fluxon_client::Status>"),
        "{api}"
    );
    assert!(
        api.contains("pub async fn ping(&self, request: ()) -> Result<(), fluxon_client::Status>"),
        "{api}"
    );
    assert!(
        api.contains("pub const LIST: &str = \"app.api.Catalog/List\";"),
        "{api}"
    );
    assert!(
        api.contains(".call_with(catalog_routes::LIST, &request, options.idempotent())"),
        "{api}"
    );
    // Every package module can serve the descriptor set.
    assert!(
        api.contains("pub const FILE_DESCRIPTOR_SET: &[u8] = b\""),
        "{api}"
    );
}

#[test]
fn build_flags_leave_out_the_other_side() {
    let dir = two_packages();
    let proto = dir.path().join("app/api.proto");
    let client_only = fluxon_codegen::configure()
        .build_server(false)
        .generate(&[&proto], &[dir.path()])
        .unwrap();
    let api = &client_only.rust_file("app.api").unwrap().contents;
    assert!(api.contains("pub struct CatalogClient"));
    assert!(!api.contains("fluxon_server"), "{api}");

    let server_only = fluxon_codegen::configure()
        .build_client(false)
        .generate(&[&proto], &[dir.path()])
        .unwrap();
    let api = &server_only.rust_file("app.api").unwrap().contents;
    assert!(api.contains("pub trait Catalog: Send + Sync + 'static"));
    assert!(api.contains("pub fn reflection_router() -> fluxon_server::Router"));
    assert!(!api.contains("fluxon_client"), "{api}");
}

#[test]
fn generated_names_must_not_clash_with_messages() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "clash.proto",
        "syntax = \"proto3\";\npackage clash;\nmessage Shop { string name = 1; }\nservice Shop { rpc Get(Shop) returns (Shop); }\n",
    );
    let err = fluxon_codegen::configure()
        .generate(&[dir.path().join("clash.proto")], &[dir.path()])
        .unwrap_err();
    // protox itself rejects two symbols named `clash.Shop`, with a position.
    assert!(err.to_string().contains("clash.proto:"), "{err}");

    write(
        dir.path(),
        "clash2.proto",
        "syntax = \"proto3\";\npackage clash2;\nmessage ShopClient { string name = 1; }\nservice Shop { rpc Get(ShopClient) returns (ShopClient); }\n",
    );
    let err = fluxon_codegen::configure()
        .generate(&[dir.path().join("clash2.proto")], &[dir.path()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("clash2.proto:4:1: error: service `Shop` generates `ShopClient`"),
        "{err}"
    );
}

#[test]
fn options_file_is_importable_and_is_the_embedded_text() {
    assert!(fluxon_codegen::OPTIONS_PROTO.contains("extend google.protobuf.MessageOptions"));
    assert_eq!(fluxon_codegen::OPTIONS_FILE, "fluxon/options.proto");
}

#[test]
fn storage_grants_are_importable_and_use_the_runtime_type() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "files.proto",
        r#"syntax = "proto3";
package files;
import "fluxon/storage.proto";
message UploadReply { fluxon.storage.Grant grant = 1; }
message UploadRequest { string path = 1; }
service Files { rpc Upload(UploadRequest) returns (UploadReply); }
"#,
    );
    let g = fluxon_codegen::configure()
        .generate(&[dir.path().join("files.proto")], &[dir.path()])
        .unwrap();
    let names: Vec<&str> = g.rust.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["files.rs"],
        "no copy of fluxon.storage is generated"
    );
    let files = &g.rust_file("files").unwrap().contents;
    // Named through the runtime the generated code already uses (server and client here).
    assert!(
        files.contains("::fluxon_server::proto::storage::Grant"),
        "{files}"
    );
}

#[test]
fn uniffi_glue_maps_storage_types_to_the_bindings_records() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "files.proto",
        r#"syntax = "proto3";
package files;
import "fluxon/storage.proto";
message GrantRequest { fluxon.storage.Op op = 1; string path = 2; }
message UploadReply { fluxon.storage.Grant grant = 1; repeated fluxon.storage.Entry entries = 2; }
service Files {
  rpc Upload(GrantRequest) returns (UploadReply);
  rpc Bare(GrantRequest) returns (fluxon.storage.Grant);
}
"#,
    );
    let g = fluxon_codegen::configure()
        .build_uniffi(true)
        .generate(&[dir.path().join("files.proto")], &[dir.path()])
        .unwrap();
    let files = &g.rust_file("files").unwrap().contents;
    for needle in [
        "pub grant : Option < fluxon_bindings :: Grant >",
        "pub entries : Vec < fluxon_bindings :: StorageEntry >",
        "pub op : fluxon_bindings :: StorageOp",
        "Result < fluxon_bindings :: Grant , fluxon_bindings :: FluxonError >",
        "Result < ::fluxon_client::proto::storage::Grant , fluxon_client :: Status >",
    ] {
        let flat = files.split_whitespace().collect::<Vec<_>>().join(" ");
        let needle_flat = needle.split_whitespace().collect::<Vec<_>>().join(" ");
        let squeezed = |s: &str| s.replace(' ', "");
        assert!(
            squeezed(&flat).contains(&squeezed(&needle_flat)),
            "missing `{needle}` in:\n{files}"
        );
    }
    assert!(
        !files.contains("pub struct Grant {"),
        "no copy of the grant record is generated"
    );
}

#[test]
fn uniffi_glue_refuses_storage_stream_headers() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "files.proto",
        r#"syntax = "proto3";
package files;
import "fluxon/storage.proto";
message Reply { fluxon.storage.StorageReply raw = 1; }
service Files { rpc Get(Reply) returns (Reply); }
"#,
    );
    let err = fluxon_codegen::configure()
        .build_uniffi(true)
        .generate(&[dir.path().join("files.proto")], &[dir.path()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fluxon.storage.StorageReply") && err.contains("header of the storage stream"),
        "{err}"
    );
}
