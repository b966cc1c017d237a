//! Applying schema versions to a database, and the history table that records them.

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::dir::SchemaDir;
use crate::error::{Error, Result};
use crate::handle::{Exec, Handle};
use crate::schema::{validate, Dialect, ModelMeta};
use crate::value::Arg;
use fluxon_schema::Timestamp;

const HISTORY: &str = "CREATE TABLE IF NOT EXISTS \"_fluxon_schema_history\" (
    \"version\" INTEGER PRIMARY KEY,
    \"name\" TEXT NOT NULL,
    \"checksum\" TEXT NOT NULL,
    \"applied_at\" INTEGER NOT NULL
)";

/// The history table on PostgreSQL (`applied_at` holds microseconds: 64 bits).
const HISTORY_PG: &str = "CREATE TABLE IF NOT EXISTS \"_fluxon_schema_history\" (
    \"version\" BIGINT PRIMARY KEY,
    \"name\" TEXT NOT NULL,
    \"checksum\" TEXT NOT NULL,
    \"applied_at\" BIGINT NOT NULL
)";

/// SQL with `--` comments removed and whitespace collapsed (string literals and quoted
/// identifiers kept as they are): what a checksum covers.
pub fn normalize_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut pending_space = false;
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                pending_space = true;
            }
            c if c.is_whitespace() => pending_space = true,
            '\'' | '"' => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
                let quote = c;
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == quote {
                        if chars.peek() == Some(&quote) {
                            if let Some(e) = chars.next() {
                                out.push(e);
                            }
                        } else {
                            break;
                        }
                    }
                }
            }
            c => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
        }
    }
    out
}

/// The checksum recorded for a migration: SHA-256 (hex) of its normalized forward SQL.
pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(normalize_sql(sql).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Version number.
    pub version: u32,
    /// Name at the time it was applied.
    pub name: String,
    /// Checksum of the forward SQL when applied.
    pub checksum: String,
    /// When it was applied.
    pub applied_at: Timestamp,
}

/// Where a database stands relative to a schema directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The database's version (0 for none).
    pub current: u32,
    /// The latest saved version.
    pub latest: u32,
    /// Applied versions, in order.
    pub applied: Vec<Applied>,
    /// Applied versions whose file changed since (checksum mismatch) or disappeared.
    pub edited: Vec<u32>,
}

impl Status {
    /// The database is at the latest version and no applied migration was edited.
    pub fn is_current(&self) -> bool {
        self.current == self.latest && self.edited.is_empty()
    }
}

fn applied(h: &Handle<'_>) -> Result<Vec<Applied>> {
    let exists = match h.dialect() {
        Dialect::Postgres => "SELECT to_regclass('_fluxon_schema_history') IS NOT NULL",
        _ => {
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = '_fluxon_schema_history')"
        }
    };
    let found = h.rows(exists, &[] as &[Arg<'_>], |r| r.integer(0))?;
    if found.first().copied().unwrap_or(0) == 0 {
        return Ok(Vec::new());
    }
    h.rows(
        "SELECT version, name, checksum, applied_at FROM _fluxon_schema_history ORDER BY version",
        &[] as &[Arg<'_>],
        |r| {
            let version = r.integer(0)?;
            Ok(Applied {
                version: u32::try_from(version)
                    .map_err(|_| Error::Migration(format!("history names version {version}")))?,
                name: r.text(1)?.unwrap_or_default(),
                checksum: r.text(2)?.unwrap_or_default(),
                applied_at: Timestamp::from_micros(r.integer(3)?),
            })
        },
    )
}

/// The database's schema status relative to `dir`.
pub fn status(h: &Handle<'_>, dir: &SchemaDir) -> Result<Status> {
    let versions = dir.versions()?;
    let applied = applied(h)?;
    let mut edited = Vec::new();
    for a in &applied {
        let same = match versions.iter().find(|v| v.number == a.version) {
            Some(v) => checksum(&dir.up_sql_in(v, h.dialect())?) == a.checksum,
            None => false,
        };
        if !same {
            edited.push(a.version);
        }
    }
    Ok(Status {
        current: applied.last().map_or(0, |a| a.version),
        latest: versions.last().map_or(0, |v| v.number),
        applied,
        edited,
    })
}

/// Brings the database to version `target` (forward or backward), one transaction per
/// version. Refuses when an applied migration was edited or a needed reverse is missing.
/// Returns the versions run, in order.
pub fn apply(h: &Handle<'_>, dir: &SchemaDir, target: u32) -> Result<Vec<u32>> {
    let st = status(h, dir)?;
    if !st.edited.is_empty() {
        return Err(Error::Migration(format!(
            "applied migration(s) {:?} were edited or removed after being applied (checksum mismatch); restore them or repair the database",
            st.edited
        )));
    }
    if target > st.latest {
        return Err(Error::Migration(format!(
            "no schema version {target} (latest is {})",
            st.latest
        )));
    }
    let mut ran = Vec::new();
    if target > st.current {
        for n in st.current + 1..=target {
            let v = dir.version(n)?;
            let sql = dir.up_sql_in(&v, h.dialect())?;
            let sum = checksum(&sql);
            run(h, &sql, |h| {
                h.run(
                    "INSERT INTO _fluxon_schema_history (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
                    &[
                        Arg::Integer(n.into()),
                        Arg::Text(&v.name),
                        Arg::Text(&sum),
                        Arg::Integer(Timestamp::now().as_micros()),
                    ],
                )?;
                Ok(())
            })
            .map_err(|e| Error::Migration(format!("version {n} ({}) failed, rolled back: {e}", v.name)))?;
            tracing::info!(version = n, name = %v.name, "schema migration applied");
            ran.push(n);
        }
    } else {
        for n in (target + 1..=st.current).rev() {
            let v = dir.version(n)?;
            let sql = dir.down_sql_in(&v, h.dialect())?.ok_or_else(|| {
                Error::Migration(format!("version {n} ({}) has no reverse migration", v.name))
            })?;
            run(h, &sql, |h| {
                h.run(
                    "DELETE FROM _fluxon_schema_history WHERE version = ?1",
                    &[Arg::Integer(n.into())],
                )?;
                Ok(())
            })
            .map_err(|e| {
                Error::Migration(format!(
                    "reverting version {n} ({}) failed, rolled back: {e}",
                    v.name
                ))
            })?;
            tracing::info!(version = n, name = %v.name, "schema migration reverted");
            ran.push(n);
        }
    }
    Ok(ran)
}

/// Runs `sql` then `record` in one transaction.
fn run(h: &Handle<'_>, sql: &str, record: impl FnOnce(&Handle<'_>) -> Result<()>) -> Result<()> {
    match h.exec {
        Exec::Sqlite(conn) => run_sqlite(conn, sql, || record(h)),
        Exec::Postgres(_) => {
            // PostgreSQL's DDL is transactional and its foreign keys are checked as each
            // statement runs: a failing version leaves nothing behind.
            if h.in_transaction() {
                return Err(Error::Migration(
                    "schema versions are applied outside any transaction".into(),
                ));
            }
            h.transaction(|h| {
                h.execute_batch(HISTORY_PG)?;
                h.execute_batch(sql)?;
                record(h)
            })
        }
    }
}

/// SQLite: `sql` then `record` in one transaction with foreign keys off (as SQLite's
/// table-rebuild procedure requires), checking foreign keys before commit.
fn run_sqlite(conn: &Connection, sql: &str, record: impl FnOnce() -> Result<()>) -> Result<()> {
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = (|| -> Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute_batch(HISTORY)?;
        conn.execute_batch(sql)?;
        let violation: Option<String> = conn
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = violation {
            return Err(Error::ForeignKeyViolation(format!(
                "rows of {table} reference missing rows after the migration"
            )));
        }
        record()?;
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if result.is_err() && !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "rollback of failed migration failed");
        }
    }
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    conn.flush_prepared_statement_cache();
    result
}

/// Checks that `models` are the latest saved version and that the database is at it.
/// The server calls this on start and refuses to serve on error unless told to apply.
pub fn check(h: &Handle<'_>, dir: &SchemaDir, models: &[ModelMeta]) -> Result<Status> {
    let st = status(h, dir)?;
    let latest = dir.latest_snapshot()?;
    if latest != validate(models)? {
        return Err(Error::VersionMismatch(format!(
            "the models differ from the latest saved schema version {}: save a new version first",
            st.latest
        )));
    }
    if !st.edited.is_empty() {
        return Err(Error::VersionMismatch(format!(
            "applied migration(s) {:?} were edited after being applied",
            st.edited
        )));
    }
    if st.current != st.latest {
        return Err(Error::VersionMismatch(format!(
            "database is at schema version {}, the server expects {}: apply {} first",
            st.current, st.latest, st.latest
        )));
    }
    Ok(st)
}

/// [`check`], but when only the database's version is behind (or ahead) and `apply_if_needed`
/// is set, applies the latest version first.
pub fn ensure(
    h: &Handle<'_>,
    dir: &SchemaDir,
    models: &[ModelMeta],
    apply_if_needed: bool,
) -> Result<Status> {
    match check(h, dir, models) {
        Err(Error::VersionMismatch(msg)) if apply_if_needed => {
            let st = status(h, dir)?;
            if st.current == st.latest || !st.edited.is_empty() {
                return Err(Error::VersionMismatch(msg));
            }
            apply(h, dir, st.latest)?;
            check(h, dir, models)
        }
        other => other,
    }
}

/// The version recorded in the database (0 when none).
pub fn current_version(h: &Handle<'_>) -> Result<u32> {
    Ok(applied(h)?.last().map_or(0, |a| a.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_ignores_comments_and_whitespace_only() {
        let a = "-- header\nCREATE TABLE \"a\" (\n  \"x\"  TEXT DEFAULT '--  x'\n);\n";
        let b = "CREATE TABLE \"a\" ( \"x\"\tTEXT DEFAULT '--  x' ); -- trailing";
        assert_eq!(normalize_sql(a), normalize_sql(b));
        assert_eq!(checksum("SELECT 1; -- c"), checksum("  SELECT   1;"));
        assert_ne!(checksum("SELECT 1;"), checksum("SELECT 2;"));
        assert!(normalize_sql(a).contains("'--  x'"));
    }
}
