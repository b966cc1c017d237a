//! Route names to typed handlers.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use fluxon_proto::Status;
use prost::Message;

use crate::request::{CallContext, Request};
use crate::session::SessionHandle;
use crate::stats::{RouteSnapshot, RouteStats};
use crate::streaming::{
    Bidirectional, ClientStreaming, ErasedStreamHandler, ReplyStream, ServerStreaming, Streaming,
};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How the framework treats a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteOptions {
    /// Calls from sessions that are not logged in get `unauthenticated` before the handler runs.
    pub requires_login: bool,
    /// Running the call twice has the effect of running it once, so clients may retry it after
    /// a lost connection.
    pub idempotent: bool,
}

impl RouteOptions {
    /// Options with nothing set.
    pub const fn new() -> Self {
        Self {
            requires_login: false,
            idempotent: false,
        }
    }

    /// Refuses callers who are not logged in.
    pub const fn requires_login(mut self) -> Self {
        self.requires_login = true;
        self
    }

    /// Marks the route safe to retry.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

/// A handler with its message types erased: payload bytes in, reply bytes out.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    fn call(&self, payload: Bytes, ctx: CallContext) -> BoxFuture<Result<Bytes, Status>>;
}

struct FnHandler<F, Req, Rep> {
    f: F,
    _types: PhantomData<fn(Req) -> Rep>,
}

impl<F, Fut, Req, Rep> ErasedHandler for FnHandler<F, Req, Rep>
where
    F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
    Req: Message + Default + Send + 'static,
    Rep: Message + 'static,
{
    fn call(&self, payload: Bytes, ctx: CallContext) -> BoxFuture<Result<Bytes, Status>> {
        let message = match Req::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                let status = Status::invalid_argument(format!("malformed request payload: {e}"));
                return Box::pin(std::future::ready(Err(status)));
            }
        };
        let reply = (self.f)(Request::new(message, ctx));
        Box::pin(async move {
            let reply = reply.await?;
            Ok(Bytes::from(reply.encode_to_vec()))
        })
    }
}

/// How a route is called.
#[derive(Clone)]
pub(crate) enum Handler {
    /// One request, one reply.
    Unary(Arc<dyn ErasedHandler>),
    /// Messages each way on a stream of the call's own.
    Streaming(Arc<dyn ErasedStreamHandler>),
}

#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) handler: Handler,
    pub(crate) options: RouteOptions,
    /// Counters of the calls to this route.
    pub(crate) stats: Arc<RouteStats>,
}

impl Route {
    /// The unary handler, if `session` may call this route: `unauthenticated` when the route
    /// requires a login the session lacks, `unimplemented` for a streaming route.
    pub(crate) fn unary_for(
        &self,
        session: &SessionHandle,
    ) -> Result<&Arc<dyn ErasedHandler>, Status> {
        self.admit(session)?;
        match &self.handler {
            Handler::Unary(h) => Ok(h),
            Handler::Streaming(_) => Err(Status::unimplemented(format!(
                "`{}` is a streaming route: open a streaming call",
                self.name
            ))),
        }
    }

    /// The streaming handler, if `session` may call this route (as [`Route::unary_for`]).
    pub(crate) fn streaming_for(
        &self,
        session: &SessionHandle,
    ) -> Result<&Arc<dyn ErasedStreamHandler>, Status> {
        self.admit(session)?;
        match &self.handler {
            Handler::Streaming(h) => Ok(h),
            Handler::Unary(_) => Err(Status::unimplemented(format!(
                "`{}` is not a streaming route: call it as a unary call",
                self.name
            ))),
        }
    }

    fn admit(&self, session: &SessionHandle) -> Result<(), Status> {
        if self.options.requires_login && session.user_id().is_none() {
            return Err(Status::unauthenticated(format!(
                "`{}` requires a logged-in user",
                self.name
            )));
        }
        Ok(())
    }
}

/// The status of a call to a route that does not exist.
pub(crate) fn no_route(name: &str) -> Status {
    Status::not_found(format!("no route `{name}`"))
}

/// Maps route names (`package.Service/Method`) to handlers.
///
/// ```
/// use fluxon_server::{Request, Router, RouteOptions, Status};
///
/// async fn echo(req: Request<String>) -> Result<String, Status> {
///     Ok(req.into_inner())
/// }
///
/// let router = Router::new()
///     .route("demo.Echo/Echo", echo)
///     .route_with("demo.Echo/Whoami", RouteOptions::new().requires_login(), |req: Request<()>| async move {
///         Ok(format!("user {}", req.require_user()?))
///     });
/// assert_eq!(router.routes().count(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Router {
    routes: BTreeMap<String, Route>,
    /// Counters of calls to routes that do not exist.
    pub(crate) unrouted: Arc<RouteStats>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.routes.keys()).finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route with default options. The request and reply types are inferred from the
    /// handler: an async function or closure taking `Request<Req>` and returning
    /// `Result<Rep, Status>`.
    ///
    /// # Panics
    /// When `name` is not of the form `package.Service/Method` or is already routed: both are
    /// mistakes in the program, found at startup.
    pub fn route<Req, Rep, F, Fut>(self, name: &str, handler: F) -> Self
    where
        F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
        Req: Message + Default + Send + 'static,
        Rep: Message + 'static,
    {
        self.route_with(name, RouteOptions::default(), handler)
    }

    /// Adds a route with options.
    ///
    /// # Panics
    /// As [`Router::route`].
    pub fn route_with<Req, Rep, F, Fut>(self, name: &str, options: RouteOptions, handler: F) -> Self
    where
        F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
        Req: Message + Default + Send + 'static,
        Rep: Message + 'static,
    {
        let handler = FnHandler {
            f: handler,
            _types: PhantomData,
        };
        self.insert(name, options, Handler::Unary(Arc::new(handler)))
    }

    /// Adds route `name`, checking its form and that it is new.
    fn insert(mut self, name: &str, options: RouteOptions, handler: Handler) -> Self {
        assert!(
            is_valid_route_name(name),
            "route name `{name}` must look like `package.Service/Method`"
        );
        let route = Route {
            name: Arc::from(name),
            handler,
            options,
            stats: Arc::default(),
        };
        let previous = self.routes.insert(name.to_owned(), route);
        assert!(previous.is_none(), "route `{name}` is registered twice");
        self
    }

    /// Adds a server-streaming route: one request, a stream of replies. The handler returns
    /// the replies as a [`Stream`](futures_core::Stream) of `Result<Rep, Status>`; an `Err` item
    /// ends the call with that status. The stream is pulled only as fast as the client reads.
    ///
    /// ```
    /// use fluxon_server::{Request, RouteOptions, Router, Status};
    ///
    /// let router = Router::new().server_streaming(
    ///     "demo.Count/Up",
    ///     RouteOptions::new(),
    ///     |req: Request<u64>| async move {
    ///         let n = req.into_inner();
    ///         Ok::<_, Status>(futures_util::stream::iter((0..n).map(Ok)))
    ///     },
    /// );
    /// assert_eq!(router.routes().count(), 1);
    /// ```
    ///
    /// # Panics
    /// As [`Router::route`].
    pub fn server_streaming<Req, Rep, F, Fut, S>(
        self,
        name: &str,
        options: RouteOptions,
        handler: F,
    ) -> Self
    where
        F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, Status>> + Send + 'static,
        S: ReplyStream<Rep>,
        Req: Message + Default + Send + 'static,
        Rep: Message + 'static,
    {
        let handler = ServerStreaming {
            f: Arc::new(handler),
            _types: PhantomData,
        };
        self.insert(name, options, Handler::Streaming(Arc::new(handler)))
    }

    /// Adds a client-streaming route: a stream of requests ([`Streaming`]), one reply.
    ///
    /// # Panics
    /// As [`Router::route`].
    pub fn client_streaming<Req, Rep, F, Fut>(
        self,
        name: &str,
        options: RouteOptions,
        handler: F,
    ) -> Self
    where
        F: Fn(Request<Streaming<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Rep, Status>> + Send + 'static,
        Req: Message + Default + Send + 'static,
        Rep: Message + 'static,
    {
        let handler = ClientStreaming {
            f: handler,
            _types: PhantomData,
        };
        self.insert(name, options, Handler::Streaming(Arc::new(handler)))
    }

    /// Adds a bidirectional streaming route: a stream of requests ([`Streaming`]) in, a stream
    /// of replies out, both at once.
    ///
    /// # Panics
    /// As [`Router::route`].
    pub fn bidi_streaming<Req, Rep, F, Fut, S>(
        self,
        name: &str,
        options: RouteOptions,
        handler: F,
    ) -> Self
    where
        F: Fn(Request<Streaming<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, Status>> + Send + 'static,
        S: ReplyStream<Rep>,
        Req: Message + Default + Send + 'static,
        Rep: Message + 'static,
    {
        let handler = Bidirectional {
            f: handler,
            _types: PhantomData,
        };
        self.insert(name, options, Handler::Streaming(Arc::new(handler)))
    }

    /// Adds every route of `other`.
    ///
    /// # Panics
    /// When both routers route the same name.
    pub fn merge(mut self, other: Self) -> Self {
        for (name, route) in other.routes {
            let previous = self.routes.insert(name.clone(), route);
            assert!(previous.is_none(), "route `{name}` is registered twice");
        }
        self
    }

    /// The routes, sorted by name, with their options.
    pub fn routes(&self) -> impl Iterator<Item = (&str, RouteOptions)> + '_ {
        self.routes.iter().map(|(n, r)| (n.as_str(), r.options))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    /// A snapshot of every route's counters, then those of unknown routes when called.
    pub(crate) fn stats(&self) -> Vec<RouteSnapshot> {
        let mut rows: Vec<RouteSnapshot> = self
            .routes
            .iter()
            .map(|(name, r)| r.stats.snapshot(name))
            .collect();
        let unrouted = self.unrouted.snapshot("(unknown route)");
        if unrouted.calls > 0 {
            rows.push(unrouted);
        }
        rows
    }
}

/// `package.Service/Method`: a non-empty service path and method, no spaces.
pub(crate) fn is_valid_route_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((service, method)) => {
            !service.is_empty()
                && !method.is_empty()
                && !method.contains('/')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._/".contains(c))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names() {
        assert!(is_valid_route_name("university.University/Signup"));
        assert!(is_valid_route_name("Svc/M"));
        assert!(!is_valid_route_name("NoSlash"));
        assert!(!is_valid_route_name("/M"));
        assert!(!is_valid_route_name("S/"));
        assert!(!is_valid_route_name("a/b/c"));
        assert!(!is_valid_route_name("a b/c"));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn duplicate_routes_panic() {
        async fn h(_: Request<()>) -> Result<(), Status> {
            Ok(())
        }
        let _ = Router::new().route("a.B/C", h).route("a.B/C", h);
    }
}
