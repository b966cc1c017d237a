//! What a handler receives: the decoded message and the context of the call.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use fluxon_proto::{Metadata, Status};
use tokio::time::Instant;

use crate::grant::{GrantBuilder, Op};
use crate::session::{SessionHandle, SessionId};

/// Context of one call, shared by [`Request`] whatever its message type.
#[derive(Debug)]
pub(crate) struct CallContext {
    pub(crate) route: Arc<str>,
    pub(crate) session: SessionHandle,
    pub(crate) peer: SocketAddr,
    pub(crate) metadata: Metadata,
    pub(crate) deadline: Instant,
}

/// A call as a handler sees it: the decoded request message plus who sent it.
///
/// Derefs to the message, so fields read as `req.username`.
#[derive(Debug)]
pub struct Request<T> {
    message: T,
    ctx: CallContext,
}

impl<T> Request<T> {
    pub(crate) fn new(message: T, ctx: CallContext) -> Self {
        Self { message, ctx }
    }

    /// The request message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// Takes the request message out.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// The route called, `package.Service/Method`.
    pub fn route(&self) -> &str {
        &self.ctx.route
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.ctx.peer
    }

    /// The metadata the client sent with the call.
    pub fn metadata(&self) -> &Metadata {
        &self.ctx.metadata
    }

    /// When the caller stops waiting. Work past it is wasted: the reply is discarded.
    pub fn deadline(&self) -> Instant {
        self.ctx.deadline
    }

    /// The caller's session; keep a clone to make reverse calls later.
    pub fn session(&self) -> &SessionHandle {
        &self.ctx.session
    }

    /// The caller's session id.
    pub fn session_id(&self) -> SessionId {
        self.ctx.session.id()
    }

    /// The logged-in user, if any.
    pub fn user_id(&self) -> Option<i64> {
        self.ctx.session.user_id()
    }

    /// The logged-in user, or `unauthenticated`.
    pub fn require_user(&self) -> Result<i64, Status> {
        self.user_id()
            .ok_or_else(|| Status::unauthenticated("this call requires a logged-in user"))
    }

    /// Logs the session in as `user_id` (durably; the client learns it with this call's reply).
    pub async fn login(&self, user_id: i64) -> Result<(), Status> {
        self.ctx.session.login(user_id).await
    }

    /// Logs the session out; it goes on anonymously.
    pub async fn logout(&self) -> Result<(), Status> {
        self.ctx.session.logout().await
    }

    /// Starts a storage grant letting this caller's session perform `op` on `path` (relative to
    /// the storage root). Set options on the builder, then [`GrantBuilder::sign`] it and put the
    /// [`Grant`](crate::grant::Grant) in the reply. The application decides who may do what; the
    /// storage service only checks the grant.
    pub fn grant(&self, op: Op, path: impl Into<String>) -> GrantBuilder {
        let session = &self.ctx.session;
        GrantBuilder::new(session.shared.key.clone(), session.id(), op, path)
    }
}

impl<T> Deref for Request<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.message
    }
}

impl<T> DerefMut for Request<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.message
    }
}
