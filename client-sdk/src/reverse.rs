//! Handlers the client registers for the server's reverse calls.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use fluxon_proto::Status;
use prost::Message;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub(crate) trait ErasedReverse: Send + Sync + 'static {
    fn call(&self, payload: Bytes) -> BoxFuture<Result<Bytes, Status>>;
}

struct FnReverse<F, Req, Rep> {
    f: F,
    _types: PhantomData<fn(Req) -> Rep>,
}

impl<F, Fut, Req, Rep> ErasedReverse for FnReverse<F, Req, Rep>
where
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
    Req: Message + Default + 'static,
    Rep: Message + 'static,
{
    fn call(&self, payload: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        let message = match Req::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                let status =
                    Status::invalid_argument(format!("malformed reverse-call payload: {e}"));
                return Box::pin(std::future::ready(Err(status)));
            }
        };
        let reply = (self.f)(message);
        Box::pin(async move { Ok(Bytes::from(reply.await?.encode_to_vec())) })
    }
}

/// A handler of encoded payloads (see [`ReverseRouter::route_raw`]).
struct RawReverse<F>(F);

impl<F, Fut> ErasedReverse for RawReverse<F>
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    fn call(&self, payload: Bytes) -> BoxFuture<Result<Bytes, Status>> {
        Box::pin((self.0)(payload))
    }
}

/// Maps reverse-call route names to the client's handlers.
///
/// ```
/// use fluxon_client::{ReverseRouter, Status};
///
/// let reverse = ReverseRouter::new().route("demo.Events/Notify", |text: String| async move {
///     println!("server says {text}");
///     Ok::<_, Status>(())
/// });
/// assert_eq!(reverse.routes().count(), 1);
/// ```
#[derive(Clone, Default)]
pub struct ReverseRouter {
    routes: BTreeMap<String, Arc<dyn ErasedReverse>>,
}

impl fmt::Debug for ReverseRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.routes.keys()).finish()
    }
}

impl ReverseRouter {
    /// No handlers: every reverse call is answered `not_found`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the handler for `name`, replacing any earlier one.
    pub fn route<Req, Rep, F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
        Req: Message + Default + 'static,
        Rep: Message + 'static,
    {
        self.routes.insert(
            name.to_owned(),
            Arc::new(FnReverse {
                f: handler,
                _types: PhantomData,
            }),
        );
        self
    }

    /// Registers a handler of encoded requests and replies for `name`, replacing any earlier
    /// one: what language bindings build their typed handlers on.
    pub fn route_raw<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        self.routes
            .insert(name.to_owned(), Arc::new(RawReverse(handler)));
        self
    }

    /// Adds every handler of `other`.
    pub fn merge(mut self, other: Self) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// The route names handled.
    pub fn routes(&self) -> impl Iterator<Item = &str> + '_ {
        self.routes.keys().map(String::as_str)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn ErasedReverse>> {
        self.routes.get(name)
    }
}
