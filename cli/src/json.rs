//! JSON to protobuf for `fluxon call`: user input decoded against descriptors known only at run
//! time. Pure, so it is property-tested and fuzzed.

use prost_reflect::{DynamicMessage, MessageDescriptor};

/// Why a JSON request could not become a message.
#[derive(Debug, thiserror::Error)]
#[error("request is not a valid {message}: {reason}")]
pub struct JsonError {
    /// The message type expected.
    pub message: String,
    /// What was wrong.
    pub reason: String,
}

/// Decodes `json` (protobuf's JSON mapping) as a `desc` message; trailing input is an error.
pub fn request_from_json(
    desc: &MessageDescriptor,
    json: &str,
) -> Result<DynamicMessage, JsonError> {
    let fail = |e: serde_json::Error| JsonError {
        message: desc.full_name().to_owned(),
        reason: e.to_string(),
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(desc.clone(), &mut de).map_err(fail)?;
    de.end().map_err(fail)?;
    Ok(message)
}
