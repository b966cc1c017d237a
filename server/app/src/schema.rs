//! The application's schema versions: the models compiled into the server, the schema
//! directory of saved versions, and the database they are applied to.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fluxon_db::migrate::{plan, SaveOptions, SchemaDir};
use fluxon_db::schema::{validate, ModelMeta};
use fluxon_db::Database;
use fluxon_server::StateLocation;

use crate::error::AppError;

/// The models of an application and where their versions and data live.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    /// The models compiled into the application (codegen's `models::all()`).
    pub models: Vec<ModelMeta>,
    /// The directory of saved versions.
    pub dir: PathBuf,
    /// The database: a SQLite file, or a `postgres://` URL.
    pub database: PathBuf,
}

/// What the server does about the database's schema version when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupCheck {
    /// The database is at the latest saved version and the models match it.
    Current(u32),
    /// The database was new and empty: the latest version was applied to it.
    Initialized(u32),
    /// The database was behind (or ahead) and `--apply-schema` brought it to the latest.
    Applied {
        /// Version before.
        from: u32,
        /// Version after.
        to: u32,
    },
    /// The application has no models: nothing to check.
    NoModels,
}

impl SchemaSet {
    /// A schema set.
    pub fn new(
        models: Vec<ModelMeta>,
        dir: impl Into<PathBuf>,
        database: impl Into<PathBuf>,
    ) -> Self {
        Self {
            models,
            dir: dir.into(),
            database: database.into(),
        }
    }

    fn schema_dir(&self) -> SchemaDir {
        SchemaDir::new(&self.dir)
    }

    /// Where the database is, as [`StateLocation::parse`] reads it.
    pub fn location(&self) -> StateLocation {
        StateLocation::parse(&self.database.to_string_lossy())
    }

    /// The database for messages (a URL's password hidden).
    fn shown(&self) -> String {
        self.location().to_string()
    }

    /// Whether the database exists: a SQLite file is created by the first start, a
    /// PostgreSQL database by its administrator.
    fn exists(&self) -> bool {
        match self.location() {
            StateLocation::Postgres(_) => true,
            _ => self.database.exists(),
        }
    }

    fn open(&self) -> Result<Database, AppError> {
        if let StateLocation::Postgres(url) = self.location() {
            return Ok(Database::connect(&url)?);
        }
        if let Some(parent) = self.database.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| AppError::io(parent, e))?;
        }
        Ok(Database::open(&self.database)?)
    }

    /// Saves the models as the next version (`saveschema [name]`).
    pub fn save(&self, name: Option<&str>, allow_destructive: bool) -> Result<String, AppError> {
        let dir = self.schema_dir();
        let name = name.unwrap_or("schema");
        match dir.save(&self.models, name, SaveOptions { allow_destructive })? {
            Some(v) => Ok(format!(
                "saved schema version {} ({}) in {}",
                v.number,
                v.name,
                self.dir.display()
            )),
            None => Ok("no change since the latest saved version: nothing saved".into()),
        }
    }

    /// Lists the saved versions, marking the database's (`schemas`).
    pub fn list(&self) -> Result<String, AppError> {
        let versions = self.schema_dir().versions()?;
        let current = self.current_version()?;
        if versions.is_empty() {
            return Ok(format!(
                "no schema version saved in {} (database at version {current})",
                self.dir.display()
            ));
        }
        let mut out = String::new();
        for v in &versions {
            let mark = if v.number == current { '*' } else { ' ' };
            let _ = writeln!(out, "{mark} {:>4}  {}", v.number, v.name);
        }
        let _ = write!(out, "database at version {current} (marked *)");
        Ok(out)
    }

    /// What saving now would change (`schema diff`).
    pub fn diff(&self) -> Result<String, AppError> {
        let plan = self.schema_dir().diff(&self.models)?;
        if plan.is_empty() {
            return Ok("the models match the latest saved version".into());
        }
        let mut out = String::from("changes since the latest saved version:\n");
        for c in &plan.changes {
            let destructive = if plan.destructive.contains(c) {
                "  (destructive)"
            } else {
                ""
            };
            let _ = writeln!(out, "  {c}{destructive}");
        }
        out.push_str("SQL:\n");
        out.push_str(plan.sql().trim_end());
        Ok(out)
    }

    /// Where the database stands (`schema status`). Read only: a database that does not
    /// exist is reported, not created.
    pub fn status(&self) -> Result<String, AppError> {
        let dir = self.schema_dir();
        let models_match = dir.diff(&self.models)?.is_empty();
        if !self.exists() {
            let latest = dir.versions()?.last().map_or(0, |v| v.number);
            let mut out = format!(
                "no database at {}: version 0 of {latest} saved (the server creates it at the \
                 latest version when it first starts)",
                self.shown()
            );
            if !models_match {
                out.push_str(
                    "\nthe models differ from the latest saved version: save a new version",
                );
            }
            return Ok(out);
        }
        let st = self.open()?.schema_status(&dir)?;
        let mut out = format!(
            "database {}: version {} of {} saved",
            self.shown(),
            st.current,
            st.latest
        );
        for a in &st.applied {
            let _ = write!(out, "\n  applied {:>4}  {}", a.version, a.name);
        }
        if !st.edited.is_empty() {
            let _ = write!(out, "\nedited after being applied: {:?}", st.edited);
        }
        out.push_str(if models_match {
            "\nthe models match the latest saved version"
        } else {
            "\nthe models differ from the latest saved version: save a new version"
        });
        out.push_str(if st.is_current() && models_match {
            "\nup to date"
        } else {
            "\nnot up to date"
        });
        Ok(out)
    }

    /// Brings the database to version `target` (`updateschema N`, `schema apply N`).
    pub fn apply(&self, target: u32) -> Result<String, AppError> {
        let db = self.open()?;
        let before = db.schema_status(&self.schema_dir())?.current;
        let ran = db.apply_schema(&self.schema_dir(), target)?;
        Ok(if ran.is_empty() {
            format!("database already at version {target}")
        } else {
            format!("database moved from version {before} to {target} (ran {ran:?})")
        })
    }

    /// Brings the database of a running server to version `target` (the console's
    /// `updateschema N`): only to the version its compiled models match, which the start-up
    /// check also requires; any other version is refused, as a change to make offline with
    /// `<app> schema apply N` while the server is stopped.
    pub fn apply_live(&self, target: u32, app: &str) -> Result<String, AppError> {
        let models = self.models_version()?;
        if models != Some(target) {
            return Err(AppError::LiveSchema {
                requested: target,
                models,
                app: app.to_owned(),
            });
        }
        self.apply(target)
    }

    /// The saved version whose models are the compiled ones (the latest such), `Some(0)` for
    /// no models and no version, `None` when no saved version matches.
    pub fn models_version(&self) -> Result<Option<u32>, AppError> {
        let dir = self.schema_dir();
        let models = validate(&self.models).map_err(fluxon_db::Error::from)?;
        for v in dir.versions()?.iter().rev() {
            if plan(&dir.snapshot(v)?, &models)?.is_empty() {
                return Ok(Some(v.number));
            }
        }
        Ok(models.is_empty().then_some(0))
    }

    /// The database's version (0 for a new database).
    pub fn current_version(&self) -> Result<u32, AppError> {
        if !self.exists() {
            return Ok(0);
        }
        Ok(self.open()?.schema_status(&self.schema_dir())?.current)
    }

    /// The check a server runs before serving: the models must be the latest saved version
    /// and the database at it. A database file that does not exist yet is created at the
    /// latest version; otherwise a database at another version is refused unless `apply`.
    pub fn check_on_start(&self, apply: bool) -> Result<StartupCheck, AppError> {
        if self.models.is_empty() {
            return Ok(StartupCheck::NoModels);
        }
        let dir = self.schema_dir();
        // Unsaved models are refused before the database is opened, so that a first start
        // before `schema save` leaves no empty database behind (which the next start would
        // take for one at version 0).
        if !dir.diff(&self.models)?.is_empty() {
            let saved = match dir.versions()?.last() {
                Some(v) => format!(
                    "the models differ from the latest saved schema version {}",
                    v.number
                ),
                None => "no schema version is saved yet".to_owned(),
            };
            return Err(AppError::Failed(format!(
                "{saved} (schema directory {}): save a version first (`schema save NAME`), \
                 then start again",
                self.dir.display()
            )));
        }
        let file_is_new = !self.exists();
        let db = self.open()?;
        let status = db.schema_status(&dir)?;
        // A new SQLite file, or a PostgreSQL database that no version was ever applied to.
        let fresh = file_is_new
            || (matches!(self.location(), StateLocation::Postgres(_)) && status.applied.is_empty());
        let before = status.current;
        let st = db
            .ensure_schema(&dir, &self.models, apply || fresh)
            .map_err(|e| match e {
                fluxon_db::Error::VersionMismatch(msg) => {
                    let hint = if status.edited.is_empty() {
                        "start with --apply-schema to apply the latest version, or move it \
                         with `schema apply N`"
                    } else {
                        "put the schema directory's files back as they were applied"
                    };
                    AppError::Failed(format!(
                        "{msg} (database {}, schema directory {}; {hint})",
                        self.shown(),
                        self.dir.display()
                    ))
                }
                other => other.into(),
            })?;
        Ok(if before == st.current {
            StartupCheck::Current(st.current)
        } else if fresh {
            StartupCheck::Initialized(st.current)
        } else {
            StartupCheck::Applied {
                from: before,
                to: st.current,
            }
        })
    }
}

/// The versions saved in `dir` (for completion and listings).
pub(crate) fn saved_versions(dir: &Path) -> Vec<u32> {
    SchemaDir::new(dir)
        .versions()
        .map(|v| v.iter().map(|v| v.number).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_commands_create_no_database() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("data/shop.db");
        let set = SchemaSet::new(
            fluxon_db::testing::models(),
            dir.path().join("schema"),
            &database,
        );
        set.save(Some("initial"), false).unwrap();
        let status = set.status().unwrap();
        assert!(
            status.starts_with(&format!(
                "no database at {}: version 0 of 1 saved",
                database.display()
            )),
            "{status}"
        );
        assert!(set
            .list()
            .unwrap()
            .ends_with("database at version 0 (marked *)"));
        assert!(set
            .diff()
            .unwrap()
            .contains("match the latest saved version"));
        assert_eq!(set.current_version().unwrap(), 0);
        assert!(!database.exists());
        assert!(!dir.path().join("data").exists());
        // `apply` is the command that creates it.
        set.apply(1).unwrap();
        assert!(set.status().unwrap().ends_with("up to date"));
    }

    #[test]
    fn the_models_version_is_the_saved_version_they_match() {
        let dir = tempfile::tempdir().unwrap();
        let set =
            |models| SchemaSet::new(models, dir.path().join("schema"), dir.path().join("a.db"));
        assert_eq!(set(Vec::new()).models_version().unwrap(), Some(0));
        let all = fluxon_db::testing::models();
        assert_eq!(set(all.clone()).models_version().unwrap(), None);
        set(all[..1].to_vec()).save(Some("one"), false).unwrap();
        set(all.clone()).save(Some("all"), false).unwrap();
        assert_eq!(set(all.clone()).models_version().unwrap(), Some(2));
        assert_eq!(set(all[..1].to_vec()).models_version().unwrap(), Some(1));
        let err = set(all[..1].to_vec()).apply_live(2, "shop").unwrap_err();
        assert!(
            matches!(
                err,
                AppError::LiveSchema {
                    requested: 2,
                    models: Some(1),
                    ..
                }
            ),
            "{err}"
        );
        assert!(!dir.path().join("a.db").exists());
    }
}
