//! Helpers for test suites that run against a real S3-compatible object store (Fluxon's own
//! suites use them; so can an application's).
//!
//! [`s3_test_store`] names a fresh key prefix in the test bucket of the store that
//! [`S3_ENV`] points at. When the variable is unset it returns `None` and prints one line
//! saying what it would need, so `cargo test` passes on a machine without a store; `.ci/run`
//! starts one (`.ci/s3.sh`).

use std::io::Write;
use std::sync::Once;

use crate::ObjectStoreConfig;

/// The environment variable naming the store's endpoint, e.g. `http://127.0.0.1:9000`.
/// `FLUXON_TEST_S3_ACCESS_KEY` and `FLUXON_TEST_S3_SECRET_KEY` hold its credentials and
/// `FLUXON_TEST_S3_BUCKET` the bucket (default `fluxon-test`), which must exist.
pub const S3_ENV: &str = "FLUXON_TEST_S3";

/// A configuration for a new, empty prefix of the test bucket, or `None` (with one line on
/// stderr) when [`S3_ENV`] is unset. `suite` names the caller in the skip line and the prefix.
pub fn s3_test_store(suite: &str) -> Option<ObjectStoreConfig> {
    static SKIP: Once = Once::new();
    let Ok(endpoint) = std::env::var(S3_ENV) else {
        SKIP.call_once(|| {
            // Written to the stream itself, not through `eprintln!`, which the test harness
            // captures: the line must show in a passing run.
            let _ = writeln!(
                std::io::stderr(),
                "skipping object store suites ({suite} first): set {S3_ENV} to an S3-compatible \
                 endpoint (.ci/run starts one)"
            );
        });
        return None;
    };
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let bucket = var("FLUXON_TEST_S3_BUCKET", "fluxon-test");
    let mut random = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .expect("random bytes");
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        ObjectStoreConfig::new(format!("s3://{bucket}/{suite}-{suffix}"))
            .endpoint(endpoint)
            .credentials(
                var("FLUXON_TEST_S3_ACCESS_KEY", ""),
                var("FLUXON_TEST_S3_SECRET_KEY", ""),
            ),
    )
}

/// The store's own client (`object_store`) for `config`, built as the storage service builds
/// it, and the key of `config`'s prefix: for suites and benchmarks that look at the store
/// beside Fluxon (what is visible under which key) or race it.
///
/// # Panics
/// When `config` cannot make a client (a malformed URL).
pub fn store_client(
    config: &ObjectStoreConfig,
) -> (
    std::sync::Arc<object_store::aws::AmazonS3>,
    object_store::path::Path,
) {
    let backend = crate::object::ObjectBackend::connect(config).expect("a usable store config");
    (backend.store, backend.prefix)
}
