//! Reverse calls: the server calls handlers the Kotlin, Swift or Python application implements.

use std::sync::Arc;

use bytes::Bytes;
use fluxon_client::{ReverseRouter, Status};

use crate::error::FluxonError;

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
        let router = routes
            .into_iter()
            .fold(ReverseRouter::new(), |router, route| {
                let handler = Arc::clone(&handler);
                let name = route.clone();
                router.route_raw(&name, move |request: Bytes| {
                    let handler = Arc::clone(&handler);
                    let route = route.clone();
                    async move {
                        handler
                            .handle(route, request.to_vec())
                            .await
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
