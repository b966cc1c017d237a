//! Helpers for test suites that run against a real PostgreSQL or NATS server (Fluxon's own
//! suites use them; so can an application's).
//!
//! A suite asks [`fresh_postgres`] for a database of its own, and [`nats`] for the NATS server
//! linking a cluster. When the variable naming the server is unset it gets `None` and prints one
//! line saying what it would need, so `cargo test` passes on a machine without them; `.ci/run`
//! starts both and sets the variables.

use std::io::Write;
use std::sync::Once;

/// The environment variable naming a PostgreSQL server for tests: a `postgres://` URL whose
/// user may create databases, e.g. `postgresql://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_ENV: &str = "FLUXON_TEST_POSTGRES";

/// A new, empty database on the test server, as a URL, or `None` (with one line on stderr)
/// when [`POSTGRES_ENV`] is unset. `suite` names the caller in the skip line and the
/// database's name.
///
/// # Panics
/// When the variable is set but the database cannot be created: a configured server that does
/// not work is a failure, not a skip.
pub async fn fresh_postgres(suite: &str) -> Option<String> {
    static SKIP: Once = Once::new();
    let Ok(admin) = std::env::var(POSTGRES_ENV) else {
        SKIP.call_once(|| {
            // Written to the stream itself, not through `eprintln!`, which the test harness
            // captures: the line must show in a passing run.
            let _ = writeln!(
                std::io::stderr(),
                "skipping PostgreSQL suites ({suite} first): set {POSTGRES_ENV} to a server URL \
                 (.ci/run starts one)"
            );
        });
        return None;
    };
    let suffix = random_suffix();
    let clean: String = suite
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let name = format!("fluxon_{clean}_{suffix}");
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but unreachable: {e}"));
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    drop(client);
    let _ = task.await;
    Some(with_database(&admin, &name))
}

/// The environment variable naming a NATS server for tests, e.g. `nats://127.0.0.1:4222`.
pub const NATS_ENV: &str = "FLUXON_TEST_NATS";

/// The test NATS server's URL, or `None` (with one line on stderr) when [`NATS_ENV`] is unset.
/// `suite` names the caller in the skip line. Suites keep apart on a shared server by using
/// a subject prefix of their own ([`ClusterConfig::subject_prefix`](crate::ClusterConfig)).
pub fn nats(suite: &str) -> Option<String> {
    static SKIP: Once = Once::new();
    match std::env::var(NATS_ENV) {
        Ok(url) => Some(url),
        Err(_) => {
            SKIP.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping cluster suites ({suite} first): set {NATS_ENV} to a NATS server \
                     URL (.ci/run starts one)"
                );
            });
            None
        }
    }
}

/// A subject prefix no other test run uses: `t` and 12 random hex digits.
pub fn unique_prefix() -> String {
    format!("t{}", random_suffix())
}

/// 12 random hex digits, to keep test runs apart.
fn random_suffix() -> String {
    let mut random = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .expect("random bytes");
    crate::grant::hex(&random)
}

/// `url` naming database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> String {
    let query = url.find('?').unwrap_or(url.len());
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..query].find('/') {
        Some(slash) => {
            let start = after_scheme + slash + 1;
            format!("{}{name}{}", &url[..start], &url[query..])
        }
        None => format!("{}/{name}{}", &url[..query], &url[query..]),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced() {
        assert_eq!(
            with_database("postgresql://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgresql://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql:///postgres?host=/tmp/pg&user=postgres", "t1"),
            "postgresql:///t1?host=/tmp/pg&user=postgres"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
    }
}
