//! The university example's server, on fluxon-app.
//!
//! `cargo run --release --bin university-server` serves on 127.0.0.1:7443 with its state in
//! `./data` (sessions, the application database `university.db`, the development certificate);
//! `--help` lists the runtime's flags and the `schema` subcommands.

fn main() -> std::process::ExitCode {
    university::app().run()
}
