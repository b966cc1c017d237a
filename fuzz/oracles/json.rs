// Shared by the `json` fuzz target and `cli/tests/json_props.rs`: `fluxon call`'s JSON input
// against a message with every kind of field never panics, and what it accepts encodes and
// decodes back to the same message.

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

/// A schema with scalars, repeated, map, enum, nested message and bytes fields.
pub const SCHEMA: &str = r#"
syntax = "proto3";
package fuzz;
enum Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; }
message Inner { string name = 1; repeated int64 ids = 2; }
message Request {
  string text = 1;
  int64 big = 2;
  uint32 small = 3;
  double ratio = 4;
  bool flag = 5;
  bytes blob = 6;
  Kind kind = 7;
  Inner inner = 8;
  repeated Inner many = 9;
  map<string, int32> counts = 10;
  optional sint64 maybe = 11;
}
"#;

/// The `fuzz.Request` descriptor, compiled from [`SCHEMA`] with protox.
pub fn request_descriptor() -> MessageDescriptor {
    let dir = std::env::temp_dir().join(format!("fluxon-json-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("fuzz.proto"), SCHEMA).expect("write schema");
    let fds = protox::compile(["fuzz.proto"], [&dir]).expect("schema compiles");
    let pool = DescriptorPool::from_file_descriptor_set(fds).expect("descriptor pool");
    pool.get_message_by_name("fuzz.Request")
        .expect("fuzz.Request")
}

/// Decodes `json`; on success the message must survive protobuf round trips: its encoding
/// decodes, and decoding is stable from then on. (The first message is not compared directly:
/// JSON can set a field to its default, e.g. an empty map, which protobuf does not encode; and
/// map entries may be encoded in any order, so bytes are not compared either.)
pub fn check(desc: &MessageDescriptor, json: &str) {
    if let Ok(message) = fluxon_cli::json::request_from_json(desc, json) {
        let decode = |bytes: Vec<u8>| {
            DynamicMessage::decode(desc.clone(), bytes.as_slice()).expect("own encoding decodes")
        };
        let back = decode(message.encode_to_vec());
        let again = decode(back.encode_to_vec());
        assert_eq!(back, again, "{json}");
    }
}
