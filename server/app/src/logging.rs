//! Logging: a tracing subscriber whose filter can be changed at run time (`loglevel`) and
//! whose lines go through the console's external printer while the console is up, so they
//! appear above the prompt instead of in the middle of what the operator types.

use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Name of the console's thread.
pub(crate) const CONSOLE_THREAD: &str = "console";

/// Prints one finished log line (the console's external printer).
pub(crate) type Printer = Box<dyn FnMut(String) + Send>;

/// Where log lines go: the console's printer when set, else standard error.
#[derive(Default)]
pub(crate) struct LogSink {
    printer: Mutex<Option<Printer>>,
}

impl LogSink {
    fn emit(&self, line: &[u8]) {
        // The console thread logs only between two `readline`s (while running a command):
        // nothing to redraw then, and the printer's channel would only be drained later.
        if std::thread::current().name() == Some(CONSOLE_THREAD) {
            let _ = std::io::stderr().lock().write_all(line);
            return;
        }
        let mut printer = self.printer.lock().unwrap_or_else(PoisonError::into_inner);
        match printer.as_mut() {
            Some(print) => print(whole_line(line)),
            None => {
                let _ = std::io::stderr().lock().write_all(line);
            }
        }
    }

    /// Routes lines to `printer` (or back to standard error with `None`).
    pub(crate) fn set_printer(&self, printer: Option<Printer>) {
        *self.printer.lock().unwrap_or_else(PoisonError::into_inner) = printer;
    }
}

/// `line` as the printer gets it: ending in exactly one newline. While the console runs a
/// command (between two `readline`s) rustyline's printer writes the text as it is, so without
/// the newline the next output (the command's reply, or the prompt) would continue the log
/// line; while it reads a line, the printer adds a newline only when there is none.
fn whole_line(line: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(line).trim_end().to_owned();
    text.push('\n');
    text
}

/// The process's sink, shared by the subscriber and the console.
pub(crate) fn sink() -> &'static Arc<LogSink> {
    static SINK: OnceLock<Arc<LogSink>> = OnceLock::new();
    SINK.get_or_init(Arc::default)
}

/// Buffers one event and hands it to the sink whole when dropped.
pub(crate) struct EventWriter {
    buf: Vec<u8>,
    sink: Arc<LogSink>,
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.emit(&self.buf);
        }
    }
}

#[derive(Clone)]
struct SinkWriter(Arc<LogSink>);

impl<'a> MakeWriter<'a> for SinkWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            buf: Vec::with_capacity(256),
            sink: Arc::clone(&self.0),
        }
    }
}

/// Changes the log filter of the running process.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl std::fmt::Debug for LogControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogControl").finish_non_exhaustive()
    }
}

impl LogControl {
    /// Replaces the filter with `directives` (`debug`, `info,fluxon_server=trace`, ...).
    pub fn set(&self, directives: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(with_quiet_editor(directives))
            .map_err(|e| format!("bad log filter `{directives}`: {e}"))?;
        self.handle
            .reload(filter)
            .map_err(|e| format!("cannot change the log filter: {e}"))
    }
}

/// `directives` with rustyline's own logs held at `warn`: the editor logs from inside
/// `readline`, and its lines would go to the external printer that the same thread drains,
/// which blocks once the printer's channel is full.
fn with_quiet_editor(directives: &str) -> String {
    if directives.contains("rustyline") {
        directives.to_owned()
    } else if directives.trim().is_empty() {
        "rustyline=warn".to_owned()
    } else {
        format!("{directives},rustyline=warn")
    }
}

/// The filter to start with: `RUST_LOG` when it holds directives, else `level`, else `info`.
/// A `RUST_LOG` (or `level`) that is set but empty counts as unset, so `RUST_LOG=` does not
/// silence the INFO lines; one that does not parse falls through to the next.
fn initial_filter(rust_log: Option<&str>, level: &str) -> EnvFilter {
    [rust_log.unwrap_or(""), level]
        .into_iter()
        .filter(|d| !d.trim().is_empty())
        .find_map(|d| EnvFilter::try_new(with_quiet_editor(d)).ok())
        .unwrap_or_else(|| EnvFilter::new(with_quiet_editor("info")))
}

/// Installs the process's subscriber with `level` (overridden by `RUST_LOG` when set and not
/// empty). Returns `None` when a subscriber was already installed (e.g. by a test harness).
pub fn init(level: &str) -> Option<LogControl> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = initial_filter(rust_log.as_deref(), level);
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(SinkWriter(Arc::clone(sink())));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .ok()
        .map(|()| LogControl { handle })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn lines_reach_the_printer_whole() {
        let sink = LogSink::default();
        // What rustyline's printer does while a command runs: writes the text as it is.
        let terminal = Arc::new(Mutex::new(String::new()));
        let out = Arc::clone(&terminal);
        sink.set_printer(Some(Box::new(move |text: String| {
            out.lock().unwrap().push_str(&text);
        })));
        sink.emit(b"INFO fluxon_db: schema migration applied version=1\n");
        sink.emit(b"WARN no newline at all");
        sink.emit(b"INFO crlf\r\n");
        // The command's reply, printed after the log lines.
        terminal
            .lock()
            .unwrap()
            .push_str("database moved from version 0 to 1\n");
        assert_eq!(
            *terminal.lock().unwrap(),
            "INFO fluxon_db: schema migration applied version=1\n\
             WARN no newline at all\n\
             INFO crlf\n\
             database moved from version 0 to 1\n"
        );
    }

    #[test]
    fn an_empty_rust_log_counts_as_unset() {
        let level =
            |rust_log: Option<&str>, level: &str| initial_filter(rust_log, level).max_level_hint();
        assert_eq!(level(Some(""), "info"), Some(LevelFilter::INFO));
        assert_eq!(level(Some("  "), "info"), Some(LevelFilter::INFO));
        assert_eq!(level(None, "info"), Some(LevelFilter::INFO));
        assert_eq!(level(Some("debug"), "info"), Some(LevelFilter::DEBUG));
        assert_eq!(level(Some("warn"), "debug"), Some(LevelFilter::WARN));
        // An empty level (`--log-level ''`, `FLUXON_LOG_LEVEL=`) is the default, `info`.
        assert_eq!(level(None, ""), Some(LevelFilter::INFO));
        assert_eq!(level(Some(""), ""), Some(LevelFilter::INFO));
        // A RUST_LOG that does not parse falls back to the level.
        assert_eq!(level(Some("[bad"), "debug"), Some(LevelFilter::DEBUG));
    }
}
