//! Fluxon's code generator: from `.proto` schemas to typed routes, client stubs, reverse-call
//! glue, database models and SQL.
//!
//! In `build.rs`:
//!
//! ```no_run
//! fn main() -> Result<(), fluxon_codegen::Error> {
//!     fluxon_codegen::configure()
//!         .build_server(true)
//!         .build_client(true)
//!         .sql_out_dir("schema")
//!         .compile(&["proto/app.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! and in the crate, one module per protobuf package:
//!
//! ```ignore
//! pub mod university {
//!     fluxon_codegen::include_schema!("university");
//! }
//! ```
//!
//! Per package the generated module holds prost's message types, then for each service
//! `Svc`: route-name constants in `svc_routes`; a `Svc` trait (one `async fn` per rpc) and
//! `SvcServer::new(impl).into_router()`; a `SvcClient` stub; for a reverse service
//! (`option (fluxon.service) = { reverse: true }`) a server-side `SvcCaller` and a client-side
//! `SvcHandler` trait with `svc_reverse_router(Arc<impl SvcHandler>)`. Models
//! (`option (fluxon.model)`) become row types in a `models` module implementing
//! `fluxon_db::Model`; the SQL DDL of each package is written to `<package>.sql` (SQLite) and
//! `<package>.postgres.sql` (PostgreSQL). The
//! descriptor set is embedded as `FILE_DESCRIPTOR_SET`, served by `reflection_router()`.
//!
//! The generated code depends on `prost` and, as configured, on `fluxon-server` (server side),
//! `fluxon-client` (client side), `fluxon-db` (models) and `prost-types` (well-known types).
//!
//! Identifiers in SQL are always quoted, so SQL keywords (`order`, `group`, `select`) are
//! valid model and field names; names starting with `sqlite_` or `_fluxon` are reserved and
//! rejected.

mod error;
mod ffi;
mod load;
mod model;
mod options;
mod rust;
mod service;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use fluxon_schema::{Dialect, ModelMeta};
use prost_build::Module;

/// How the PostgreSQL DDL file of a package is named after its stem (`app.blog.postgres.sql`).
pub const POSTGRES_SQL_SUFFIX: &str = ".postgres.sql";

pub use error::{Diagnostic, Error, Location};
pub use load::{OPTIONS_FILE, OPTIONS_PROTO, STORAGE_FILE, STORAGE_PROTO};

/// Includes the code generated for protobuf package `$package` from `OUT_DIR`, like
/// `tonic::include_proto!`. Put it inside a module named after the package.
#[macro_export]
macro_rules! include_schema {
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
    };
}

/// A builder with every part enabled; see [`Builder`].
pub fn configure() -> Builder {
    Builder::default()
}

/// Generates everything for `protos` (found under `includes`) into `OUT_DIR`: the one-line
/// form of `configure().compile(protos, includes)`.
pub fn compile_protos(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> Result<Generated, Error> {
    configure().compile(protos, includes)
}

/// Generates Rust and SQL for `protos` into `dir` (both kinds of file side by side): the
/// entry point of `fluxon gen`. Never prints cargo directives.
pub fn generate_to_dir(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
    dir: impl AsRef<Path>,
) -> Result<Generated, Error> {
    let dir = dir.as_ref();
    configure()
        .out_dir(dir)
        .sql_out_dir(dir)
        .emit_rerun_if_changed(false)
        .compile(protos, includes)
}

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct Builder {
    server: bool,
    client: bool,
    models: bool,
    uniffi: bool,
    out_dir: Option<PathBuf>,
    sql_out_dir: Option<PathBuf>,
    rerun: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            server: true,
            client: true,
            models: true,
            uniffi: false,
            out_dir: None,
            sql_out_dir: None,
            rerun: true,
        }
    }
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// The file name, e.g. `university.rs` or `university.sql`.
    pub name: String,
    /// The protobuf package it was generated from.
    pub package: String,
    /// Its contents.
    pub contents: String,
}

/// The output of a generation run.
#[derive(Debug, Clone)]
pub struct Generated {
    /// One Rust file per protobuf package, named like prost-build's (`app.blog.rs`).
    pub rust: Vec<GeneratedFile>,
    /// Two SQL files per package that declares models: its SQLite DDL (`app.blog.sql`) and
    /// its PostgreSQL DDL (`app.blog.postgres.sql`).
    pub sql: Vec<GeneratedFile>,
    /// The normalized model metadata per package (the snapshot schema versions diff).
    pub models: BTreeMap<String, Vec<ModelMeta>>,
    /// The encoded descriptor set embedded in the generated code.
    pub file_descriptor_set: Vec<u8>,
    /// The `.proto` files read from disk.
    pub inputs: Vec<PathBuf>,
}

impl Generated {
    /// The Rust file of `package`.
    pub fn rust_file(&self, package: &str) -> Option<&GeneratedFile> {
        self.rust.iter().find(|f| f.package == package)
    }

    /// The SQL file of `package`.
    pub fn sql_file(&self, package: &str) -> Option<&GeneratedFile> {
        self.sql
            .iter()
            .find(|f| f.package == package && !f.name.ends_with(POSTGRES_SQL_SUFFIX))
    }

    /// The PostgreSQL DDL of `package`, if it declares models.
    pub fn postgres_sql_file(&self, package: &str) -> Option<&GeneratedFile> {
        self.sql
            .iter()
            .find(|f| f.package == package && f.name.ends_with(POSTGRES_SQL_SUFFIX))
    }

    /// Writes the Rust files into `rust_dir` and the SQL files into `sql_dir` (creating them),
    /// leaving files whose contents did not change untouched.
    pub fn write(&self, rust_dir: &Path, sql_dir: &Path) -> Result<(), Error> {
        for (dir, files) in [(rust_dir, &self.rust), (sql_dir, &self.sql)] {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            for f in files {
                write_if_changed(&dir.join(&f.name), &f.contents)?;
            }
        }
        Ok(())
    }
}

/// Puts a blank line between items, as rustfmt-formatted hand-written code has (prettyplease
/// packs them).
fn space_items(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + src.len() / 20);
    let mut prev = "";
    for line in src.lines() {
        let t = line.trim_start();
        let starts_item = ["///", "impl ", "impl<", "static ", "pub mod ", "use "]
            .iter()
            .any(|p| t.starts_with(p));
        let p = prev.trim();
        let after_item = p == "}" || p == "});" || (p.ends_with(';') && !p.starts_with("///"));
        let same_use_block = t.starts_with("use ") && p.starts_with("use ");
        if starts_item && after_item && !same_use_block {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
        prev = line;
    }
    out
}

fn write_if_changed(path: &Path, contents: &str) -> Result<(), Error> {
    if std::fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(());
    }
    std::fs::write(path, contents).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Builder {
    /// Generate the server side: service traits, their registration, reverse-call callers
    /// and the reflection route (needs `fluxon-server`). Default: on.
    pub fn build_server(mut self, enable: bool) -> Self {
        self.server = enable;
        self
    }

    /// Generate the client side: client stubs and reverse-call handler traits (needs
    /// `fluxon-client`). Default: on.
    pub fn build_client(mut self, enable: bool) -> Self {
        self.client = enable;
        self
    }

    /// Generate model code (needs `fluxon-db`) and SQL. Default: on. Models are validated
    /// either way.
    pub fn build_models(mut self, enable: bool) -> Self {
        self.models = enable;
        self
    }

    /// Generate the uniffi glue for Kotlin, Swift and Python clients: a `ffi` module in each
    /// package with records, service client objects and reverse-call foreign traits (needs the
    /// client side, `fluxon-bindings`, `uniffi`, `async-trait`; see `docs/clients.md`).
    /// Default: off.
    pub fn build_uniffi(mut self, enable: bool) -> Self {
        self.uniffi = enable;
        self
    }

    /// Where Rust files go. Default: `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Where SQL files go. Default: the Rust output directory.
    pub fn sql_out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sql_out_dir = Some(dir.into());
        self
    }

    /// Print `cargo:rerun-if-changed` for every `.proto` file read. Default: on (only takes
    /// effect inside a build script, when `OUT_DIR` is set).
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Self {
        self.rerun = enable;
        self
    }

    /// Generates and writes the files.
    pub fn compile(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<Generated, Error> {
        let env_out = std::env::var_os("OUT_DIR").map(PathBuf::from);
        let out_dir = self
            .out_dir
            .clone()
            .or_else(|| env_out.clone())
            .ok_or(Error::NoOutDir)?;
        let sql_dir = self.sql_out_dir.clone().unwrap_or_else(|| out_dir.clone());
        let generated = self.generate(protos, includes)?;
        generated.write(&out_dir, &sql_dir)?;
        if self.rerun && env_out.is_some() {
            for f in &generated.inputs {
                println!("cargo:rerun-if-changed={}", f.display());
            }
        }
        Ok(generated)
    }

    /// Generates the files without writing them.
    pub fn generate(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<Generated, Error> {
        let protos: Vec<PathBuf> = protos.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let includes: Vec<PathBuf> = includes.iter().map(|p| p.as_ref().to_path_buf()).collect();
        let loaded = load::load(&protos, &includes)?;
        let generated_files: HashSet<String> = loaded
            .pool
            .files()
            .map(|f| f.name().to_owned())
            .filter(|n| {
                !n.starts_with("google/protobuf/") && n != OPTIONS_FILE && n != STORAGE_FILE
            })
            .collect();
        let ext = options::Extensions::new(&loaded.pool);
        let models = model::read_models(&loaded, &ext, &generated_files);
        let services = service::read_services(&loaded, &ext, &generated_files);
        let (models, services) = match (models, services) {
            (Ok(m), Ok(s)) => (m, s),
            (m, s) => {
                let mut diags = m.err().unwrap_or_default();
                diags.extend(s.err().unwrap_or_default());
                return Err(Error::Schema(diags));
            }
        };

        // Packages to generate, in a stable order.
        let mut packages: Vec<String> = loaded
            .pool
            .files()
            .filter(|f| generated_files.contains(f.name()))
            .map(|f| f.package_name().to_owned())
            .collect();
        packages.sort();
        packages.dedup();

        self.check_clashes(&loaded, &packages, &services, &models)?;

        let requests = loaded
            .fds
            .file
            .iter()
            .map(|fd| (Module::from_protobuf_package_name(fd.package()), fd.clone()))
            .collect();
        let mut prost_modules = prost_build::Config::new()
            // Fluxon's own storage messages (grants) are the runtime's types, not copies.
            .extern_path(
                ".fluxon.storage",
                rust::storage_root(self.server, self.client),
            )
            .generate(requests)
            .map_err(Error::Prost)?;

        let mut out = Generated {
            rust: Vec::new(),
            sql: Vec::new(),
            models: BTreeMap::new(),
            file_descriptor_set: loaded.embedded.clone(),
            inputs: loaded.disk_files.clone(),
        };
        for package in &packages {
            let module = Module::from_protobuf_package_name(package);
            let messages = prost_modules.remove(&module).unwrap_or_default();
            let pkg_models: Vec<&model::Model> =
                models.iter().filter(|m| &m.package == package).collect();
            let mut tokens = proc_macro2::TokenStream::new();
            for s in services.iter().filter(|s| &s.package == package) {
                tokens.extend(rust::service(s, self.server, self.client));
            }
            if self.models && !pkg_models.is_empty() {
                tokens.extend(rust::models(&pkg_models));
            }
            tokens.extend(rust::descriptor(&loaded.embedded, self.server));
            if self.uniffi {
                if !self.client {
                    return Err(Error::Schema(vec![Diagnostic::new(
                        None,
                        "build_uniffi(true) needs build_client(true)".to_owned(),
                    )]));
                }
                tokens.extend(ffi::package(&loaded, package, &services).map_err(Error::Schema)?);
            }
            let file: syn::File = syn::parse2(tokens).map_err(|e| Error::Internal {
                module: package.clone(),
                message: e.to_string(),
            })?;
            let mut contents = messages;
            if !contents.is_empty() && !contents.ends_with('\n') {
                contents.push('\n');
            }
            contents.push_str("// Routes, clients and models: @generated by fluxon-codegen.\n");
            contents.push_str(&space_items(&prettyplease::unparse(&file)));
            let stem = module.to_file_name_or("_");
            let stem = stem.trim_end_matches(".rs").to_owned();
            out.rust.push(GeneratedFile {
                name: format!("{stem}.rs"),
                package: package.clone(),
                contents,
            });
            if !pkg_models.is_empty() {
                let metas: Vec<ModelMeta> = pkg_models.iter().map(|m| m.meta.clone()).collect();
                for (dialect, name, title) in [
                    (Dialect::Sqlite, format!("{stem}.sql"), "SQLite"),
                    (
                        Dialect::Postgres,
                        format!("{stem}{POSTGRES_SQL_SUFFIX}"),
                        "PostgreSQL",
                    ),
                ] {
                    let ddl = fluxon_schema::create_sql_in(&metas, dialect)
                        .map_err(|e| Error::Schema(vec![Diagnostic::new(None, e.to_string())]))?;
                    out.sql.push(GeneratedFile {
                        name,
                        package: package.clone(),
                        contents: format!(
                            "-- {title} schema of package `{package}`: @generated by fluxon-codegen.\n\n{ddl}"
                        ),
                    });
                }
                out.models.insert(package.clone(), metas);
            }
        }
        Ok(out)
    }

    /// Generated type names must not collide with the package's own messages and enums.
    fn check_clashes(
        &self,
        loaded: &load::Loaded,
        packages: &[String],
        services: &[service::Service],
        models: &[model::Model],
    ) -> Result<(), Error> {
        let mut diags = Vec::new();
        for package in packages {
            let taken: HashSet<String> = loaded
                .pool
                .all_messages()
                .filter(|m| m.package_name() == package && m.parent_message().is_none())
                .map(|m| m.name().to_owned())
                .chain(
                    loaded
                        .pool
                        .all_enums()
                        .filter(|e| e.package_name() == package && e.parent_message().is_none())
                        .map(|e| e.name().to_owned()),
                )
                .collect();
            for m in models.iter().filter(|m| &m.package == package) {
                let m = &m.meta.name;
                if self.models && rust::MODEL_IMPORTS.contains(&m.as_str()) {
                    diags.push(Diagnostic::new(
                        None,
                        format!("model `{m}` of package `{package}` has the name of an item the generated `models` module imports"),
                    ).hint(format!("rename the model; reserved model names: {}", rust::MODEL_IMPORTS.join(", "))));
                }
            }
            if self.models && taken.contains("Models") {
                diags.push(Diagnostic::new(
                    None,
                    format!("package `{package}` has a message `Models`, whose module would clash with the generated `models` module"),
                ).hint("rename the message"));
            }
            for s in services.iter().filter(|s| &s.package == package) {
                if taken.contains("Result") {
                    diags.push(Diagnostic::new(
                        None,
                        format!("package `{package}` has a message `Result`, which hides `Result` in the generated service code"),
                    ).hint("rename the message (e.g. `SearchResult`)"));
                }
                for name in rust::service_type_names(s, self.server, self.client) {
                    if taken.contains(&name) {
                        let svc = loaded.pool.get_service_by_name(&s.full_name);
                        let loc = svc.map(|d| loaded.locate(d.parent_file().name(), &[d.path()]));
                        diags.push(
                            Diagnostic::new(
                                loc,
                                format!(
                                    "service `{}` generates `{name}`, which is also a message or enum of package `{package}`",
                                    s.name
                                ),
                            )
                            .hint("rename the service or the message"),
                        );
                    }
                }
            }
        }
        if diags.is_empty() {
            Ok(())
        } else {
            Err(Error::Schema(diags))
        }
    }
}
