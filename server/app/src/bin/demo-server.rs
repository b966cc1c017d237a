//! A complete server on `fluxon-app`: an echo route, a login route, the university models of
//! `fluxon_db::testing` (so the schema commands have something to manage) and cloud storage.
//!
//! ```sh
//! cargo run -p fluxon-app --bin fluxon-demo-server -- --help
//! cargo run -p fluxon-app --bin fluxon-demo-server -- schema save initial
//! cargo run -p fluxon-app --bin fluxon-demo-server   # serve, with the console
//! ```

use fluxon_server::{Request, RouteOptions, Router, Status};

fn main() -> std::process::ExitCode {
    fluxon_app::App::new("demo")
        .about("Fluxon's demo server")
        .models(fluxon_db::testing::models())
        .cloud_storage(true)
        .router_with(|_ctx| {
            Router::new()
                .route("demo.Demo/Echo", |req: Request<String>| async move {
                    Ok::<_, Status>(req.into_inner())
                })
                .route("demo.Demo/Login", |req: Request<i64>| async move {
                    req.login(*req.message()).await
                })
                .route_with(
                    "demo.Demo/Me",
                    RouteOptions::new().requires_login(),
                    |req: Request<()>| async move { req.require_user() },
                )
        })
        .run()
}
