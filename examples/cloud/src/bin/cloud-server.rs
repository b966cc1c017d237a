//! The cloud example's server, on fluxon-app, serving cloud storage on its endpoint.
//!
//! `cargo run --release --bin cloud-server` serves on 127.0.0.1:7443 with its state in `./data`
//! (sessions, the application database `cloud.db`, the development certificate, the stored files
//! under `cloud/`); `--help` lists the runtime's flags and the `schema` subcommands.

fn main() -> std::process::ExitCode {
    cloud::app().run()
}
