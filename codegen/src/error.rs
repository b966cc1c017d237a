//! Errors: compiler-style diagnostics for schema mistakes, plus I/O and parse failures.

use std::fmt;
use std::path::PathBuf;

/// Where in a `.proto` file a diagnostic points. Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as found on disk when known (else its import name).
    pub file: String,
    /// Line, when the source position is known.
    pub line: Option<u32>,
    /// Column, when the source position is known.
    pub column: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// One mistake in a schema, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the mistake is, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(location: Option<Location>, message: impl Into<String>) -> Self {
        Self {
            location,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: error: message`, then `  = hint: ...` on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why code generation failed.
///
/// `Debug` prints the same text as `Display`, so a build script returning this error shows
/// readable compiler-style messages.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `.proto` files do not parse or do not type-check.
    #[error("{}", .0)]
    Parse(Diagnostic),
    /// The schema parses but breaks one of Fluxon's rules (one entry per mistake found).
    #[error("{}", join(.0))]
    Schema(Vec<Diagnostic>),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// prost-build could not generate the message types.
    #[error("generating message types failed: {0}")]
    Prost(std::io::Error),
    /// Neither an output directory was configured nor `OUT_DIR` set (not in a build script).
    #[error("no output directory: call `out_dir(..)` or run from a build script (OUT_DIR)")]
    NoOutDir,
    /// The generated Rust did not parse: a bug in fluxon-codegen, please report it.
    #[error("internal error: generated Rust for {module} does not parse: {message}")]
    Internal {
        /// The module being generated.
        module: String,
        /// The parser's message.
        message: String,
    },
}

fn join(diags: &[Diagnostic]) -> String {
    let parts: Vec<String> = diags.iter().map(ToString::to_string).collect();
    parts.join("\n")
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// The schema diagnostics, if this is a parse or schema error.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Parse(d) => std::slice::from_ref(d),
            Self::Schema(d) => d,
            _ => &[],
        }
    }
}
