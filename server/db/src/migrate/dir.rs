//! The schema directory: numbered, named migration files and model snapshots.
//!
//! Version `N` named `name` is three files: `NNNN_name.up.sql` (forward),
//! `NNNN_name.down.sql` (reverse) and `NNNN_name.json` (the models at version `N`), plus
//! `NNNN_name.postgres.up.sql` and `.postgres.down.sql`, the same change for PostgreSQL.
//! Version 0 is the empty schema.

use std::fs;
use std::path::{Path, PathBuf};

use super::diff::{checked_plan, plan, plan_in};
use crate::error::{Error, Result};
use crate::schema::{validate, Dialect, ModelMeta};

/// One saved schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Version number (from 1).
    pub number: u32,
    /// Name given when saved.
    pub name: String,
}

impl Version {
    fn stem(&self) -> String {
        format!("{:04}_{}", self.number, self.name)
    }
}

/// Options of [`SchemaDir::save`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// Allow dropping tables and columns (never done otherwise).
    pub allow_destructive: bool,
}

/// A directory of schema versions.
#[derive(Debug, Clone)]
pub struct SchemaDir {
    path: PathBuf,
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Keeps `[a-z0-9_]`, lowercasing letters and turning anything else into `_`.
fn clean_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if s.is_empty() {
        "schema".to_owned()
    } else {
        s
    }
}

impl SchemaDir {
    /// The schema directory at `path` (created by the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saved versions in order. Fails on a gap in the numbering or a duplicated number.
    pub fn versions(&self) -> Result<Vec<Version>> {
        let entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.path, e))?;
            let file = entry.file_name();
            let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            let Some((num, name)) = stem.split_once('_') else {
                continue;
            };
            if let Ok(number) = num.parse::<u32>() {
                out.push(Version {
                    number,
                    name: name.to_owned(),
                });
            }
        }
        out.sort_by_key(|v| v.number);
        for (i, v) in out.iter().enumerate() {
            if usize::try_from(v.number).ok() != Some(i + 1) {
                return Err(Error::Migration(format!(
                    "{}: versions must be numbered 1, 2, 3...; found {:04}_{} at position {}",
                    self.path.display(),
                    v.number,
                    v.name,
                    i + 1
                )));
            }
        }
        Ok(out)
    }

    /// The saved version `number`.
    pub fn version(&self, number: u32) -> Result<Version> {
        self.versions()?
            .into_iter()
            .find(|v| v.number == number)
            .ok_or_else(|| Error::Migration(format!("no schema version {number}")))
    }

    /// The forward SQL of `v`.
    pub fn up_sql(&self, v: &Version) -> Result<String> {
        read(&self.path.join(format!("{}.up.sql", v.stem())))
    }

    /// The reverse SQL of `v`, when one was written.
    pub fn down_sql(&self, v: &Version) -> Result<Option<String>> {
        let p = self.path.join(format!("{}.down.sql", v.stem()));
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// The forward SQL of `v` in `dialect`. PostgreSQL's is the version's
    /// `NNNN_name.postgres.up.sql`, or, for a version saved without one, derived from the
    /// snapshots.
    pub fn up_sql_in(&self, v: &Version, dialect: Dialect) -> Result<String> {
        if dialect != Dialect::Postgres {
            return self.up_sql(v);
        }
        let p = self.path.join(format!("{}.postgres.up.sql", v.stem()));
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (before, after) = self.around(v)?;
                Ok(plan_in(&before, &after, dialect)?.sql())
            }
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// The reverse SQL of `v` in `dialect` (see [`SchemaDir::up_sql_in`]).
    pub fn down_sql_in(&self, v: &Version, dialect: Dialect) -> Result<Option<String>> {
        if dialect != Dialect::Postgres {
            return self.down_sql(v);
        }
        let p = self.path.join(format!("{}.postgres.down.sql", v.stem()));
        match fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (before, after) = self.around(v)?;
                Ok(Some(plan_in(&after, &before, dialect)?.sql()))
            }
            Err(e) => Err(Error::io(p, e)),
        }
    }

    /// The models before and after `v`.
    fn around(&self, v: &Version) -> Result<(Vec<ModelMeta>, Vec<ModelMeta>)> {
        let before = match v.number {
            0 | 1 => Vec::new(),
            n => self.snapshot(&self.version(n - 1)?)?,
        };
        Ok((before, self.snapshot(v)?))
    }

    /// The models saved with `v`.
    pub fn snapshot(&self, v: &Version) -> Result<Vec<ModelMeta>> {
        let p = self.path.join(format!("{}.json", v.stem()));
        let text = read(&p)?;
        serde_json::from_str(&text).map_err(|source| Error::Snapshot { path: p, source })
    }

    /// The models of the latest version (empty when none is saved).
    pub fn latest_snapshot(&self) -> Result<Vec<ModelMeta>> {
        match self.versions()?.last() {
            Some(v) => self.snapshot(v),
            None => Ok(Vec::new()),
        }
    }

    /// What [`SchemaDir::save`] would write for `models`, without writing.
    pub fn diff(&self, models: &[ModelMeta]) -> Result<super::Plan> {
        plan(&self.latest_snapshot()?, &validate(models)?)
    }

    /// Diffs `models` against the latest snapshot and writes the next version (forward SQL,
    /// reverse SQL and snapshot). Returns `None` when nothing changed. Destructive changes
    /// fail unless `options.allow_destructive`.
    pub fn save(
        &self,
        models: &[ModelMeta],
        name: &str,
        options: SaveOptions,
    ) -> Result<Option<Version>> {
        let models = validate(models)?;
        let versions = self.versions()?;
        let previous = match versions.last() {
            Some(v) => self.snapshot(v)?,
            None => Vec::new(),
        };
        let up = checked_plan(&previous, &models, options.allow_destructive)?;
        if up.is_empty() {
            return Ok(None);
        }
        let down = plan(&models, &previous)?;
        let number = u32::try_from(versions.len() + 1)
            .map_err(|_| Error::Migration("too many versions".into()))?;
        let v = Version {
            number,
            name: clean_name(name),
        };
        fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let header = |dir: &str, changes: &[String]| {
            let mut h = format!(
                "-- Fluxon schema version {} ({}), {dir}\n",
                v.number, v.name
            );
            for c in changes {
                h.push_str(&format!("--   {c}\n"));
            }
            h
        };
        let mut up_text = header("forward", &up.changes);
        up_text.push_str(&up.sql());
        let mut down_text = header("reverse", &down.changes);
        if !up.destructive.is_empty() {
            down_text.push_str("-- note: data dropped by the forward migration is not restored\n");
        }
        down_text.push_str(&down.sql());
        let json = serde_json::to_string_pretty(&models).map_err(|source| Error::Snapshot {
            path: self.path.clone(),
            source,
        })?;
        write(&self.path.join(format!("{}.up.sql", v.stem())), &up_text)?;
        write(
            &self.path.join(format!("{}.down.sql", v.stem())),
            &down_text,
        )?;
        write(
            &self.path.join(format!("{}.json", v.stem())),
            &(json + "\n"),
        )?;
        // The same version for PostgreSQL, when it can alter its tables that way.
        let pg = plan_in(&previous, &models, Dialect::Postgres)
            .and_then(|up| Ok((up, plan_in(&models, &previous, Dialect::Postgres)?)));
        match pg {
            Ok((pg_up, pg_down)) => {
                let mut up_text = header("forward, PostgreSQL", &up.changes);
                up_text.push_str(&pg_up.sql());
                let mut down_text = header("reverse, PostgreSQL", &down.changes);
                down_text.push_str(&pg_down.sql());
                write(
                    &self.path.join(format!("{}.postgres.up.sql", v.stem())),
                    &up_text,
                )?;
                write(
                    &self.path.join(format!("{}.postgres.down.sql", v.stem())),
                    &down_text,
                )?;
            }
            Err(e) => {
                tracing::warn!(version = v.number, error = %e, "no PostgreSQL migration written");
            }
        }
        tracing::info!(version = v.number, name = %v.name, changes = up.changes.len(), "schema version saved");
        Ok(Some(v))
    }
}
