//! Property tests of `fluxon call`'s JSON input (the `json` fuzz target's oracle, bounded).

use proptest::prelude::*;

// Shared with the fuzz target, where these items are the module's interface.
#[allow(unreachable_pub)]
#[path = "../../fuzz/oracles/json.rs"]
mod oracle;

fn desc() -> prost_reflect::MessageDescriptor {
    static DESC: std::sync::OnceLock<prost_reflect::MessageDescriptor> = std::sync::OnceLock::new();
    DESC.get_or_init(oracle::request_descriptor).clone()
}

/// JSON-looking text built from the schema's field names and assorted values.
fn jsonish() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "text", "big", "small", "ratio", "flag", "blob", "kind", "inner", "many", "counts",
        "maybe", "unknown", "name", "ids",
    ]);
    let value = prop::sample::select(vec![
        "\"x\"",
        "1",
        "-1",
        "18446744073709551616",
        "1.5e308",
        "true",
        "null",
        "\"KIND_A\"",
        "\"AAEC\"",
        "\"!!\"",
        "{}",
        "[]",
        "[1,2]",
        "{\"name\":\"n\",\"ids\":[\"9\"]}",
        "{\"a\":1}",
        "[{}]",
        "\"\\u0000\"",
        "NaN",
    ]);
    prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        oracle::check(&desc(), &text);
    }

    #[test]
    fn json_like_input_round_trips_when_accepted(json in jsonish()) {
        oracle::check(&desc(), &json);
    }
}

#[test]
fn valid_requests_are_accepted_and_invalid_ones_explained() {
    let d = desc();
    let ok = fluxon_cli::json::request_from_json(
        &d,
        r#"{"text":"hi","big":"7","kind":"KIND_A","inner":{"name":"n"},"counts":{"a":1}}"#,
    )
    .unwrap();
    assert_eq!(ok.get_field_by_name("text").unwrap().as_str(), Some("hi"));
    let err = fluxon_cli::json::request_from_json(&d, r#"{"flag":"yes"}"#).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("request is not a valid fuzz.Request"),
        "{err}"
    );
    let err = fluxon_cli::json::request_from_json(&d, r#"{} trailing"#).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
}
