//! The cloud example's server, on fluxon-app, serving cloud storage on its endpoint.
//!
//! `cargo run --release --bin cloud-server` serves on 127.0.0.1:7443 with its state in `./data`
//! (sessions, the application database `cloud.db`, the development certificate, the stored files
//! under `cloud/`); `--help` lists the runtime's flags and the `schema` subcommands.

fn main() -> std::process::ExitCode {
    fluxon_app::App::new(cloud::APP_NAME)
        .about("Fluxon's cloud example: owners with quotas, folders and files")
        .models(cloud::cloud::models::all())
        .schema_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schema"))
        .cloud_storage(true)
        .router_with(|ctx| cloud::router(ctx.database()))
        // The database records each change once storage has made it durable.
        .storage_hooks_with(|ctx| cloud::Service::new(ctx.database()))
        .run()
}
