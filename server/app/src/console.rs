//! The interactive console: a rustyline editor on its own thread, feeding lines to the shared
//! [`Executor`].
//!
//! While the console runs, log lines go through rustyline's external printer, which redraws the
//! prompt and the line being typed below them. Ctrl-C or Ctrl-D at the prompt shut the server
//! down as `shutdown` does.

use std::path::PathBuf;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter as _, Helper};

use crate::command::{Executor, COMMANDS, LOG_LEVELS};
use crate::logging;

/// Tab completion of command names, session ids (`kick`), schema versions (`updateschema`)
/// and log levels (`loglevel`).
pub(crate) struct ConsoleHelper {
    executor: Executor,
}

impl ConsoleHelper {
    /// Candidates for the word at `pos` in `line`: where it starts and the words it may become.
    pub(crate) fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let line = &line[..pos.min(line.len())];
        let start = line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &line[start..];
        let before: Vec<&str> = line[..start].split_whitespace().collect();
        let options: Vec<String> = match before.as_slice() {
            [] => COMMANDS.iter().map(|c| c.0.to_owned()).collect(),
            ["kick"] => self
                .executor
                .server()
                .map(|s| {
                    s.sessions()
                        .all()
                        .iter()
                        .map(|h| h.id().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            ["updateschema"] => {
                let mut v: Vec<String> = crate::schema::saved_versions(&self.executor.schema().dir)
                    .iter()
                    .map(u32::to_string)
                    .collect();
                v.insert(0, "0".into());
                v
            }
            ["loglevel"] => LOG_LEVELS.iter().map(|l| (*l).to_owned()).collect(),
            ["help"] => COMMANDS.iter().map(|c| c.0.to_owned()).collect(),
            _ => Vec::new(),
        };
        let mut matches: Vec<String> = options
            .into_iter()
            .filter(|o| o.starts_with(word))
            .collect();
        matches.sort();
        (start, matches)
    }
}

impl Completer for ConsoleHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = self.candidates(line, pos);
        let pairs = words
            .into_iter()
            .map(|w| Pair {
                display: w.clone(),
                replacement: format!("{w} "),
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ConsoleHelper {
    type Hint = String;
}
impl Highlighter for ConsoleHelper {}
impl Validator for ConsoleHelper {}
impl Helper for ConsoleHelper {}

/// Runs the console on the current (blocking) thread until `shutdown`, Ctrl-C, Ctrl-D, or the
/// server stopping for another reason. `runtime` runs the commands.
pub(crate) fn run(
    executor: Executor,
    prompt: String,
    history: Option<PathBuf>,
    runtime: tokio::runtime::Handle,
) {
    let mut editor: Editor<ConsoleHelper, DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the console");
            return;
        }
    };
    editor.set_helper(Some(ConsoleHelper {
        executor: executor.clone(),
    }));
    if let Some(h) = &history {
        // A missing history file is normal on first start.
        let _ = editor.load_history(h);
    }
    match editor.create_external_printer() {
        Ok(mut printer) => logging::sink().set_printer(Some(Box::new(move |line: String| {
            let _ = printer.print(line);
        }))),
        Err(e) => tracing::debug!(error = %e, "no external printer; logs go to stderr"),
    }
    println!("type `help` for the commands, `shutdown` to stop");
    loop {
        let stopped = executor.server().is_some_and(|s| {
            runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::ZERO, s.stopped())
                    .await
                    .is_ok()
            })
        });
        if stopped {
            break;
        }
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => "shutdown".to_owned(),
            Err(e) => {
                tracing::warn!(error = %e, "console input failed; console stopped");
                break;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(trimmed);
        match runtime.block_on(executor.execute_line(trimmed)) {
            Ok(reply) => {
                if !reply.text.is_empty() {
                    println!("{}", reply.text);
                }
                if reply.shutdown {
                    break;
                }
            }
            Err(e) => println!("error: {e}"),
        }
    }
    logging::sink().set_printer(None);
    if let Some(h) = &history {
        if let Err(e) = editor.save_history(h) {
            tracing::debug!(error = %e, "cannot save the console history");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaSet;

    #[test]
    fn completes_commands_and_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let helper = ConsoleHelper {
            executor: Executor::offline(SchemaSet::new(
                Vec::new(),
                dir.path().join("schema"),
                dir.path().join("app.db"),
            )),
        };
        assert_eq!(
            helper.candidates("s", 1),
            (
                0,
                vec![
                    "schemadiff".into(),
                    "schemas".into(),
                    "schemastatus".into(),
                    "sessions".into(),
                    "shutdown".into(),
                    "stats".into()
                ]
            )
        );
        assert_eq!(helper.candidates("ro", 2), (0, vec!["routes".into()]));
        assert_eq!(
            helper.candidates("loglevel d", 10),
            (9, vec!["debug".into()])
        );
        assert_eq!(
            helper.candidates("updateschema ", 13),
            (13, vec!["0".into()])
        );
        assert_eq!(helper.candidates("help ki", 7), (5, vec!["kick".into()]));
        // Offline there are no sessions to complete.
        assert_eq!(helper.candidates("kick ", 5), (5, Vec::<String>::new()));
    }
}
