//! Live sessions: ids, login state, the connection currently serving each, and reverse calls.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fluxon_proto::wire::{CallHeader, ReplyHeader};
use fluxon_proto::{close, io, Status};
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

use crate::cluster::relay::{Op, Relayed};
use crate::server::{now_secs, Shared};

/// A session's identity: 16 random bytes, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub(crate) fn random() -> Option<Self> {
        let mut bytes = [0u8; 16];
        SystemRandom::new().fill(&mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// The text was not 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a session id is 32 hexadecimal digits")]
pub struct ParseSessionIdError;

impl FromStr for SessionId {
    type Err = ParseSessionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.is_ascii() {
            return Err(ParseSessionIdError);
        }
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| ParseSessionIdError)?;
        }
        Ok(Self(bytes))
    }
}

/// Mutable state of one session, shared by its connection, its calls and its handles.
#[derive(Debug)]
pub(crate) struct SessionState {
    pub(crate) id: SessionId,
    pub(crate) created_at: u64,
    user: Mutex<Option<i64>>,
    /// Bumped on every login or logout, so a call can tell whether it changed the login state.
    login_epoch: AtomicU64,
    last_seen: AtomicU64,
    connection: Mutex<Option<quinn::Connection>>,
    pub(crate) calls_in_flight: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data that every writer leaves consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionState {
    pub(crate) fn new(stored: &crate::state::StoredSession) -> Self {
        Self {
            id: stored.id,
            created_at: stored.created_at,
            user: Mutex::new(stored.user_id),
            login_epoch: AtomicU64::new(0),
            last_seen: AtomicU64::new(stored.last_seen),
            connection: Mutex::new(None),
            calls_in_flight: AtomicUsize::new(0),
        }
    }

    pub(crate) fn user_id(&self) -> Option<i64> {
        *lock(&self.user)
    }

    /// Changes the user of a snapshot of a session another node holds (not in the registry).
    pub(crate) fn set_snapshot_user(&self, user: Option<i64>) {
        *lock(&self.user) = user;
        self.login_epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn login_epoch(&self) -> u64 {
        self.login_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn touch(&self, now: u64) {
        self.last_seen.store(now, Ordering::Relaxed);
    }

    pub(crate) fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    pub(crate) fn connection(&self) -> Option<quinn::Connection> {
        lock(&self.connection).clone()
    }

    /// Whether a connection is attached (without cloning its handle, as [`Self::connection`]
    /// does: every call's end asks).
    pub(crate) fn is_attached(&self) -> bool {
        lock(&self.connection).is_some()
    }

    /// Makes `conn` the session's connection; returns the one it replaces.
    pub(crate) fn attach(&self, conn: quinn::Connection) -> Option<quinn::Connection> {
        lock(&self.connection).replace(conn)
    }

    /// Forgets `conn` if it is still the session's connection; true if it was.
    pub(crate) fn detach(&self, conn: &quinn::Connection) -> bool {
        let mut current = lock(&self.connection);
        if current
            .as_ref()
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            *current = None;
            true
        } else {
            false
        }
    }
}

/// The live sessions of a server, by id and by user.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_id: HashMap<SessionId, Arc<SessionState>>,
    by_user: HashMap<i64, HashSet<SessionId>>,
}

impl RegistryInner {
    fn unindex_user(&mut self, user: i64, id: SessionId) {
        if let Some(set) = self.by_user.get_mut(&user) {
            set.remove(&id);
            if set.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }
}

impl Registry {
    pub(crate) fn get(&self, id: SessionId) -> Option<Arc<SessionState>> {
        lock(&self.inner).by_id.get(&id).cloned()
    }

    /// Adds a session, or returns the live one with the same id.
    pub(crate) fn insert_or_get(&self, state: Arc<SessionState>) -> Arc<SessionState> {
        let mut inner = lock(&self.inner);
        if let Some(existing) = inner.by_id.get(&state.id) {
            return Arc::clone(existing);
        }
        if let Some(user) = state.user_id() {
            inner.by_user.entry(user).or_default().insert(state.id);
        }
        inner.by_id.insert(state.id, Arc::clone(&state));
        state
    }

    /// Makes `conn` the connection of `state`'s session, under the registry's lock so that an
    /// eviction cannot slip in between: if the session was dropped from memory meanwhile, it is
    /// put back (the live entry wins over `state` when there is one). Returns the live state and
    /// the connection it replaces.
    pub(crate) fn attach(
        &self,
        state: Arc<SessionState>,
        conn: quinn::Connection,
    ) -> (Arc<SessionState>, Option<quinn::Connection>) {
        let mut inner = lock(&self.inner);
        let live = match inner.by_id.get(&state.id) {
            Some(live) => Arc::clone(live),
            None => {
                if let Some(user) = state.user_id() {
                    inner.by_user.entry(user).or_default().insert(state.id);
                }
                inner.by_id.insert(state.id, Arc::clone(&state));
                state
            }
        };
        let replaced = live.attach(conn);
        (live, replaced)
    }

    /// Drops a session from memory once it has neither a connection nor a call in flight (a
    /// resume reloads it from the store). Whichever comes last, the connection's end or its last
    /// call's, evicts it. True if it was evicted.
    pub(crate) fn evict_if_idle(&self, id: SessionId) -> bool {
        let mut inner = lock(&self.inner);
        let idle = inner
            .by_id
            .get(&id)
            .is_some_and(|s| !s.is_attached() && s.calls_in_flight.load(Ordering::Acquire) == 0);
        if idle {
            if let Some(state) = inner.by_id.remove(&id) {
                if let Some(user) = state.user_id() {
                    inner.unindex_user(user, id);
                }
            }
        }
        idle
    }

    pub(crate) fn remove(&self, id: SessionId) -> Option<Arc<SessionState>> {
        let mut inner = lock(&self.inner);
        let state = inner.by_id.remove(&id)?;
        if let Some(user) = state.user_id() {
            inner.unindex_user(user, id);
        }
        Some(state)
    }

    /// Changes a session's user, keeping the by-user index right.
    pub(crate) fn set_user(&self, state: &SessionState, user: Option<i64>) {
        let mut inner = lock(&self.inner);
        let mut current = lock(&state.user);
        if let Some(old) = *current {
            inner.unindex_user(old, state.id);
        }
        if let Some(new) = user {
            if inner.by_id.contains_key(&state.id) {
                inner.by_user.entry(new).or_default().insert(state.id);
            }
        }
        *current = user;
        state.login_epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn for_user(&self, user: i64) -> Vec<Arc<SessionState>> {
        let inner = lock(&self.inner);
        inner
            .by_user
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id).cloned())
            .collect()
    }

    pub(crate) fn all(&self) -> Vec<Arc<SessionState>> {
        lock(&self.inner).by_id.values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).by_id.len()
    }
}

/// A handle to one session: its identity and login state, and reverse calls to its client.
///
/// Cheap to clone; hold it in any task. Its methods act on the session's current connection, so
/// a handle stays useful after the client reconnects.
///
/// In a cluster, [`Sessions::for_user`] also returns the sessions other nodes hold: their
/// reverse calls, login changes and ends are relayed to the holding node (see
/// [`SessionHandle::node`]).
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) state: Arc<SessionState>,
    pub(crate) shared: Arc<Shared>,
    /// The node holding the session's connection, when it is not this one. The state of such a
    /// handle is a snapshot of the stored session, taken when it was looked up.
    home: Option<Arc<str>>,
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.state.id)
            .field("user_id", &self.state.user_id())
            .field("node", &self.node())
            .finish()
    }
}

impl SessionHandle {
    /// A handle to a session this node holds.
    pub(crate) fn local(state: Arc<SessionState>, shared: Arc<Shared>) -> Self {
        Self {
            state,
            shared,
            home: None,
        }
    }

    /// The node that holds the session's connection: this server's
    /// [`node_id`](crate::Server::node_id) for a session connected here, another node's for one
    /// found through the cluster.
    pub fn node(&self) -> &str {
        self.home.as_deref().unwrap_or(&self.shared.node_id)
    }

    /// Whether the session's connection is held by this node.
    pub fn is_local(&self) -> bool {
        self.home.is_none()
    }

    /// The cluster link and the holder, for a session held by another node.
    fn remote(&self) -> Result<Option<(&crate::cluster::Cluster, &str)>, Status> {
        match &self.home {
            None => Ok(None),
            Some(node) => match self.shared.cluster.as_ref() {
                Some(cluster) => Ok(Some((cluster, node))),
                None => Err(Status::unavailable(format!(
                    "the session is held by node {node} and this node is not in a cluster"
                ))),
            },
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.state.id
    }

    /// The logged-in user, if any.
    pub fn user_id(&self) -> Option<i64> {
        self.state.user_id()
    }

    /// The client's address, while connected to this node (`None` for a session another node
    /// holds).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.state.connection().map(|c| c.remote_address())
    }

    /// Whether the client is connected now. For a session another node holds: whether it was
    /// connected when it was looked up.
    pub fn is_connected(&self) -> bool {
        if self.home.is_some() {
            return true;
        }
        self.state
            .connection()
            .is_some_and(|c| c.close_reason().is_none())
    }

    /// When the session was created (seconds since the Unix epoch).
    pub fn created_at(&self) -> u64 {
        self.state.created_at
    }

    /// When the session was last used (seconds since the Unix epoch).
    pub fn last_seen(&self) -> u64 {
        self.state.last_seen()
    }

    /// Calls being served for this session right now (on this node).
    pub fn calls_in_flight(&self) -> usize {
        self.state.calls_in_flight.load(Ordering::Relaxed)
    }

    /// Binds the session to `user_id`, durably: the login survives reconnects and restarts.
    pub async fn login(&self, user_id: i64) -> Result<(), Status> {
        self.set_user(Some(user_id)).await
    }

    /// Removes the login; the session goes on anonymously.
    pub async fn logout(&self) -> Result<(), Status> {
        self.set_user(None).await
    }

    pub(crate) async fn set_user(&self, user: Option<i64>) -> Result<(), Status> {
        let id = self.state.id;
        if let Some((cluster, node)) = self.remote()? {
            // The holder writes the store and its own view of the session.
            let relayed = Relayed {
                session: id,
                op: Op::SetUser(user),
            };
            cluster.relay_op(node, relayed).await?;
            // This handle's snapshot follows; the registry holds no remote session.
            self.state.set_snapshot_user(user);
            return Ok(());
        }
        let now = now_secs();
        self.shared
            .store
            .set_user(id, user, now)
            .await
            .map_err(|e| {
                tracing::error!(session = %id, error = %e, "cannot persist login state");
                Status::internal("cannot save the session")
            })?;
        self.shared.sessions.set_user(&self.state, user);
        tracing::info!(session = %id, user = ?user, "login state changed");
        Ok(())
    }

    /// Ends the session: it is deleted, cannot be resumed, and its connection is closed.
    pub async fn end(&self) -> Result<(), Status> {
        let id = self.state.id;
        if let Some((cluster, node)) = self.remote()? {
            let relayed = Relayed {
                session: id,
                op: Op::End,
            };
            return cluster.relay_op(node, relayed).await;
        }
        self.shared
            .store
            .delete_session(id)
            .await
            .map_err(|_| Status::internal("cannot delete the session"))?;
        self.shared.sessions.remove(id);
        if let Some(conn) = self.state.connection() {
            conn.close(
                close::connection::KICKED.into(),
                b"session ended by the server",
            );
        }
        tracing::info!(session = %id, "session ended");
        Ok(())
    }

    /// Calls the client: a reverse call to the handler the client registered for `route`.
    /// For a session another node holds, the call is relayed to that node, which makes it.
    ///
    /// Fails with `unavailable` when the client is not connected or leaves during the call (or
    /// its node cannot be reached), and `deadline_exceeded` when no reply arrives within
    /// `timeout`.
    pub async fn call<Req, Rep>(
        &self,
        route: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Rep, Status>
    where
        Req: Message,
        Rep: Message + Default,
    {
        let header = CallHeader {
            route: route.to_owned(),
            metadata: Default::default(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            ..Default::default()
        };
        let payload = Bytes::from(request.encode_to_vec());
        let (reply, payload) = match self.remote()? {
            None => self.call_here(header, payload, timeout).await?,
            Some((cluster, node)) => {
                let relayed = Relayed {
                    session: self.state.id,
                    op: Op::Call { header, payload },
                };
                // The bus request carries the deadline (`deadline_exceeded` past it).
                cluster.relay(node, relayed, timeout).await?
            }
        };
        io::decode_reply(&reply, payload)
    }

    /// Makes a reverse call over this node's connection to the client: its reply header and
    /// payload.
    pub(crate) async fn call_here(
        &self,
        header: CallHeader,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(ReplyHeader, Bytes), Status> {
        let conn = self
            .state
            .connection()
            .ok_or_else(|| Status::unavailable("the client is not connected"))?;
        let limits = self.shared.config.limits.frame_limits();
        let route = header.route.clone();
        match tokio::time::timeout(timeout, io::call(&conn, &header, payload, limits)).await {
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the client did not answer `{route}` within {timeout:?}"
            ))),
            Ok(Err(e)) => Err(io::call_error_status(&e)),
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

/// The live sessions of a running server.
#[derive(Clone)]
pub struct Sessions {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.len())
            .finish()
    }
}

impl Sessions {
    fn handle(&self, state: Arc<SessionState>) -> SessionHandle {
        SessionHandle::local(state, Arc::clone(&self.shared))
    }

    /// The live session with this id.
    pub fn get(&self, id: SessionId) -> Option<SessionHandle> {
        self.shared.sessions.get(id).map(|s| self.handle(s))
    }

    /// The live sessions of a user (one per device): on a single node, those this node holds;
    /// in a cluster ([`ServerConfig::cluster`](crate::ServerConfig)), also those connected to
    /// other nodes, found in the presence records of the shared state store. Reverse calls,
    /// login changes and ends on those are relayed to their node.
    ///
    /// Fails (`unavailable`) only in a cluster, when the state store cannot be read.
    pub async fn for_user(&self, user_id: i64) -> Result<Vec<SessionHandle>, Status> {
        let mut handles: Vec<SessionHandle> = self
            .shared
            .sessions
            .for_user(user_id)
            .into_iter()
            .map(|s| self.handle(s))
            .collect();
        if self.shared.cluster.is_none() {
            return Ok(handles);
        }
        let presence = self
            .shared
            .store
            .presence_of_user(user_id)
            .await
            .map_err(|e| {
                tracing::error!(user = user_id, error = %e, "cannot read presence");
                Status::unavailable("cannot look up the user's sessions")
            })?;
        for p in presence {
            if p.node == self.shared.node_id || handles.iter().any(|h| h.id() == p.session) {
                continue;
            }
            let state = SessionState::new(&crate::state::StoredSession {
                id: p.session,
                user_id: Some(p.user_id),
                created_at: p.created_at,
                last_seen: p.last_seen,
            });
            handles.push(SessionHandle {
                state: Arc::new(state),
                shared: Arc::clone(&self.shared),
                home: Some(Arc::from(p.node)),
            });
        }
        Ok(handles)
    }

    /// All live sessions.
    pub fn all(&self) -> Vec<SessionHandle> {
        self.shared
            .sessions
            .all()
            .into_iter()
            .map(|s| self.handle(s))
            .collect()
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.shared.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session with no connection, for unit tests.
#[cfg(test)]
pub(crate) fn test_state(id: u8, user: Option<i64>) -> Arc<SessionState> {
    Arc::new(SessionState::new(&crate::state::StoredSession {
        id: SessionId::from_bytes([id; 16]),
        user_id: user,
        created_at: 0,
        last_seen: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: u8, user: Option<i64>) -> Arc<SessionState> {
        Arc::new(SessionState::new(&crate::state::StoredSession {
            id: SessionId::from_bytes([id; 16]),
            user_id: user,
            created_at: 0,
            last_seen: 0,
        }))
    }

    #[test]
    fn session_id_text_round_trip() {
        let id = SessionId::from_bytes([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(16));
        assert_eq!(text.parse::<SessionId>(), Ok(id));
        assert!("xyz".parse::<SessionId>().is_err());
        assert!("zz".repeat(16).parse::<SessionId>().is_err());
        assert!("é".repeat(16).parse::<SessionId>().is_err());
    }

    #[test]
    fn registry_indexes_users() {
        let reg = Registry::default();
        let a = reg.insert_or_get(state(1, Some(7)));
        let b = reg.insert_or_get(state(2, None));
        assert_eq!(reg.for_user(7).len(), 1);
        reg.set_user(&b, Some(7));
        assert_eq!(reg.for_user(7).len(), 2);
        reg.set_user(&a, None);
        assert_eq!(reg.for_user(7).len(), 1);
        assert_eq!(a.login_epoch(), 1);
        reg.remove(b.id);
        assert!(reg.for_user(7).is_empty());
        assert_eq!(reg.len(), 1);
        // A second insert with the same id returns the live one.
        let again = reg.insert_or_get(state(1, None));
        assert!(Arc::ptr_eq(&again, &a));
    }

    #[test]
    fn a_snapshot_s_login_leaves_the_registry_alone() {
        // A handle to a session another node holds carries a snapshot; the same session may
        // have moved here since, with its live state in the registry.
        let reg = Registry::default();
        let live = reg.insert_or_get(state(4, Some(1)));
        let snapshot = state(4, Some(1));
        snapshot.set_snapshot_user(Some(2));
        assert_eq!(snapshot.user_id(), Some(2));
        assert_eq!(live.user_id(), Some(1));
        assert_eq!(reg.for_user(1).len(), 1, "the live session stays indexed");
        assert!(reg.for_user(2).is_empty());
    }

    #[test]
    fn only_idle_detached_sessions_are_evicted() {
        let reg = Registry::default();
        let a = reg.insert_or_get(state(1, Some(3)));
        a.calls_in_flight.fetch_add(1, Ordering::AcqRel);
        assert!(!reg.evict_if_idle(a.id), "a call is in flight");
        assert!(reg.get(a.id).is_some());
        a.calls_in_flight.fetch_sub(1, Ordering::AcqRel);
        assert!(reg.evict_if_idle(a.id));
        assert!(reg.get(a.id).is_none());
        assert!(reg.for_user(3).is_empty(), "the user index forgets it too");
        assert!(!reg.evict_if_idle(a.id), "already gone");
    }
}
