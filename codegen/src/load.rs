//! Parsing `.proto` files with protox, Fluxon's options file served from memory.

use std::path::{Path, PathBuf};

use miette::Diagnostic as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage as _, Value};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

use crate::error::{Diagnostic, Error, Location};

/// The import name of Fluxon's options file.
pub const OPTIONS_FILE: &str = "fluxon/options.proto";

/// The text of `fluxon/options.proto`, embedded so users need not copy it.
pub const OPTIONS_PROTO: &str = include_str!("../../proto/proto/fluxon/options.proto");

/// The import name of Fluxon's cloud-storage messages (`fluxon.storage.Grant`, ...).
pub const STORAGE_FILE: &str = "fluxon/storage.proto";

/// The text of `fluxon/storage.proto`; its Rust types live in `fluxon_proto::storage`.
pub const STORAGE_PROTO: &str = include_str!("../../proto/proto/fluxon/storage.proto");

/// Serves [`OPTIONS_PROTO`] and [`STORAGE_PROTO`] under their import names.
struct EmbeddedOptions;

impl FileResolver for EmbeddedOptions {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match name {
            OPTIONS_FILE => File::from_source(name, OPTIONS_PROTO),
            STORAGE_FILE => File::from_source(name, STORAGE_PROTO),
            _ => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// A parsed schema.
pub(crate) struct Loaded {
    /// Every file with its imports, with source info and option values.
    pub(crate) pool: DescriptorPool,
    /// The same files as prost types (custom options dropped), for prost-build.
    pub(crate) fds: prost_types::FileDescriptorSet,
    /// The encoded set without source info, with option values: embedded for run time.
    pub(crate) embedded: Vec<u8>,
    /// Files read from disk, for `cargo:rerun-if-changed`.
    pub(crate) disk_files: Vec<PathBuf>,
    includes: Vec<PathBuf>,
}

impl Loaded {
    /// Where a diagnostic about `file` at `path` (a source-code-info path) points.
    pub(crate) fn locate(&self, file: &str, paths: &[&[i32]]) -> Location {
        let display = display_path(file, &self.includes);
        let span = self.pool.get_file_by_name(file).and_then(|f| {
            let info = f.file_descriptor_proto().source_code_info.as_ref()?;
            paths.iter().find_map(|want| {
                info.location
                    .iter()
                    .find(|l| l.path == *want)
                    .map(|l| l.span.clone())
            })
        });
        let (line, column) = match span.as_deref() {
            Some([line, column, ..]) => (to_u32(*line), to_u32(*column)),
            _ => (None, None),
        };
        Location {
            file: display,
            line,
            column,
        }
    }
}

impl Loaded {
    /// The leading comments of the element at `path` in `file`, trimmed.
    pub(crate) fn comments(&self, file: &str, path: &[i32]) -> Option<String> {
        let f = self.pool.get_file_by_name(file)?;
        let info = f.file_descriptor_proto().source_code_info.as_ref()?;
        let loc = info.location.iter().find(|l| l.path == path)?;
        let text = loc.leading_comments.as_deref()?.trim();
        (!text.is_empty()).then(|| text.lines().map(str::trim).collect::<Vec<_>>().join("\n"))
    }
}

fn to_u32(zero_based: i32) -> Option<u32> {
    u32::try_from(zero_based).ok().map(|v| v + 1)
}

/// The on-disk path of the file imported as `name`, when it is under one of `includes`.
fn display_path(name: &str, includes: &[PathBuf]) -> String {
    includes
        .iter()
        .map(|i| i.join(name))
        .find(|p| p.is_file())
        .map_or_else(|| name.to_owned(), |p| p.display().to_string())
}

/// Parses `protos` (paths under one of `includes`) and everything they import.
pub(crate) fn load(protos: &[PathBuf], includes: &[PathBuf]) -> Result<Loaded, Error> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(EmbeddedOptions);
    for include in includes {
        resolver.add(IncludeFileResolver::new(include.clone()));
    }
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    for proto in protos {
        compiler
            .open_file(proto)
            .map_err(|e| Error::Parse(parse_diagnostic(&e, includes)))?;
    }
    let disk_files = compiler
        .files()
        .filter_map(|f| f.path().map(Path::to_path_buf))
        .collect();
    let pool = compiler.descriptor_pool();
    let embedded = strip_source_info(&compiler.encode_file_descriptor_set())?;
    Ok(Loaded {
        fds: compiler.file_descriptor_set(),
        pool,
        embedded,
        disk_files,
        includes: includes.to_vec(),
    })
}

/// Re-encodes a `FileDescriptorSet` without `source_code_info`, keeping extension values
/// (which decoding into prost's structs would drop).
fn strip_source_info(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let desc = prost_types::FileDescriptorSet::default().descriptor();
    let mut set = DynamicMessage::decode(desc, bytes).map_err(|e| Error::Internal {
        module: "file descriptor set".to_owned(),
        message: e.to_string(),
    })?;
    if let Some(Value::List(files)) = set.get_field_by_name_mut("file") {
        for file in files {
            if let Value::Message(file) = file {
                file.clear_field_by_name("source_code_info");
            }
        }
    }
    Ok(set.encode_to_vec())
}

/// Turns protox's error into a diagnostic with a line and column when it has a span.
fn parse_diagnostic(err: &protox::Error, includes: &[PathBuf]) -> Diagnostic {
    let mut location = err.file().map(|f| Location {
        file: display_path(f, includes),
        line: None,
        column: None,
    });
    if let (Some(loc), Some(src), Some(mut labels)) =
        (location.as_mut(), err.source_code(), err.labels())
    {
        if let Some(label) = labels.next() {
            if let Ok(contents) = src.read_span(label.inner(), 0, 0) {
                loc.line = u32::try_from(contents.line() + 1).ok();
                loc.column = u32::try_from(contents.column() + 1).ok();
            }
        }
    }
    let mut diag = Diagnostic::new(location, err.to_string());
    if let Some(help) = err.help() {
        diag = diag.hint(help.to_string());
    } else if err.to_string().contains(OPTIONS_FILE) || err.to_string().contains("fluxon.") {
        diag = diag.hint(format!(
            "Fluxon's options need `import \"{OPTIONS_FILE}\";`"
        ));
    }
    diag
}
