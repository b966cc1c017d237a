//! Reverse calls: the server calls handlers the Kotlin, Swift or Python application implements.

use std::sync::Arc;

use bytes::Bytes;
use fluxon_client::{ReverseRouter, Status};

use crate::error::FluxonError;
use crate::foreign::{foreign_call, Foreign};

/// What a reverse call answers when the application is exiting.
fn exiting() -> FluxonError {
    FluxonError::Unavailable {
        detail: "the client application is exiting".into(),
    }
}

/// Answers reverse calls with encoded messages: the untyped form of the handler traits
/// fluxon-codegen generates per reverse service.
#[uniffi::export(foreign)]
#[async_trait::async_trait]
pub trait RawReverseHandler: Send + Sync {
    /// Answers the reverse call `route` carrying the encoded `request`.
    async fn handle(&self, route: String, request: Vec<u8>) -> Result<Vec<u8>, FluxonError>;
}

/// A set of reverse-call handlers to pass to `FluxonClient.connect`.
#[derive(Debug, uniffi::Object)]
pub struct ReverseService {
    router: ReverseRouter,
}

impl ReverseService {
    /// Wraps handlers registered in Rust (what generated glue does).
    pub fn from_router(router: ReverseRouter) -> Arc<Self> {
        Arc::new(Self { router })
    }

    /// The handlers.
    pub fn router(&self) -> &ReverseRouter {
        &self.router
    }
}

#[uniffi::export]
impl ReverseService {
    /// `handler` answers the reverse calls to each of `routes`.
    #[uniffi::constructor]
    pub fn raw(routes: Vec<String>, handler: Arc<dyn RawReverseHandler>) -> Arc<Self> {
        // The caller's reference goes through the gate too.
        let handler = Foreign::new(handler);
        let router = routes
            .into_iter()
            .fold(ReverseRouter::new(), |router, route| {
                let handler = handler.clone();
                let name = route.clone();
                router.route_raw(&name, move |request: Bytes| {
                    let handler = handler.clone();
                    let route = route.clone();
                    async move {
                        // Called on a runtime thread: only while the foreign runtime is up.
                        foreign_call(|| handler.handle(route, request.to_vec()))
                            .await
                            .unwrap_or_else(|| Err(exiting()))
                            .map(Bytes::from)
                            .map_err(Status::from)
                    }
                })
            });
        Self::from_router(router)
    }

    /// The routes handled.
    pub fn routes(&self) -> Vec<String> {
        self.router.routes().map(str::to_owned).collect()
    }
}
