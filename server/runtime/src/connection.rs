//! One client connection: the handshake that binds it to a session, then its streams.

use std::sync::Arc;

use fluxon_proto::io::{write_frame_and_finish, FrameReader};
use fluxon_proto::wire::{Hello, Welcome};
use fluxon_proto::{close, frame, Code, Limits, Status, StreamKind, PROTOCOL_VERSION};
use tracing::Instrument;

use crate::server::{now_secs, Shared};
use crate::session::{SessionHandle, SessionId, SessionState};
use crate::state::{StateError, StoredSession};
use crate::token::{self, TokenClaims};

/// Largest `Hello` accepted.
const MAX_HELLO: usize = 4096;

/// How long a refused client gets to receive the refusal before the connection closes.
const REFUSAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a handshake failed.
enum HandshakeError {
    /// Tell the client why, then close with this connection close code.
    Refuse(Status, u32),
    /// The connection is already gone or the client sent garbage; just close.
    Abort(&'static str),
}

/// Serves one incoming connection to its end.
///
/// The QUIC handshake (and, in `run`, the session handshake) is boxed: the task of a connected
/// session keeps only the space of its accept loop for its whole life, not the much larger
/// state of the handshakes it went through.
pub(crate) fn serve_connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
) -> impl std::future::Future<Output = ()> + Send {
    let connecting = Box::pin(std::future::IntoFuture::into_future(incoming));
    async move {
        let conn = match connecting.await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "connection attempt failed");
                return;
            }
        };
        let span = tracing::info_span!(
            "connection",
            peer = %conn.remote_address(),
            session = tracing::field::Empty,
        );
        run(shared, conn).instrument(span).await;
    }
}

async fn run(shared: Arc<Shared>, conn: quinn::Connection) {
    let limits = &shared.config.limits;
    // Boxed (see `serve_connection`).
    let handshake = Box::pin(tokio::time::timeout(
        limits.handshake_timeout,
        handshake(&shared, &conn),
    ));
    let state = match handshake.await {
        Ok(Ok(state)) => state,
        Ok(Err(HandshakeError::Refuse(status, code))) => {
            tracing::info!(status = %status, "handshake refused");
            conn.close(code.into(), status.message().as_bytes());
            return;
        }
        Ok(Err(HandshakeError::Abort(why))) => {
            tracing::debug!(why, "handshake aborted");
            conn.close(close::connection::PROTOCOL_ERROR.into(), why.as_bytes());
            return;
        }
        Err(_) => {
            tracing::debug!("handshake timed out");
            conn.close(
                close::connection::PROTOCOL_ERROR.into(),
                b"handshake timed out",
            );
            return;
        }
    };
    tracing::Span::current().record("session", tracing::field::display(state.id));
    let session = SessionHandle::local(Arc::clone(&state), Arc::clone(&shared));
    let peer = conn.remote_address();
    // One shutdown waiter for the connection's life, not one per accepted stream.
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                // Stop taking calls, but hold the connection open for the calls in flight: the
                // server closes it once they are done or the grace period is over.
                conn.closed().await;
                break;
            }
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let task = crate::call::serve_stream(
                        Arc::clone(&shared), session.clone(), peer, send, recv,
                    );
                    shared.calls.spawn(task.in_current_span());
                }
                Err(e) => {
                    tracing::debug!(reason = %e, "connection closed");
                    break;
                }
            }
        }
    }
    if state.detach(&conn) {
        let id = state.id;
        let now = now_secs();
        state.touch(now);
        // Boxed: kept inline, the store's future would sit in every idle connection's task.
        let detached = Box::pin(shared.store.detach(id, &shared.node_id, now));
        if let Err(e) = detached.await {
            tracing::warn!(error = %e, "cannot record when the session was last seen");
        }
        // Keep memory for connected sessions only; a resume reloads it from the store. With
        // calls still in flight, the last of them evicts it (see `call::InFlight`).
        shared.sessions.evict_if_idle(id);
    }
}

async fn handshake(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
) -> Result<Arc<SessionState>, HandshakeError> {
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|_| HandshakeError::Abort("connection lost before the handshake"))?;
    let mut reader = FrameReader::new(Limits {
        max_header: MAX_HELLO,
        max_payload: 0,
    });
    let kind = reader
        .read_kind(&mut recv)
        .await
        .map_err(|_| HandshakeError::Abort("no handshake"))?;
    if StreamKind::from_byte(kind) != Some(StreamKind::Hello) {
        return Err(HandshakeError::Abort(
            "the first stream must be a handshake",
        ));
    }
    let hello: Hello = reader
        .read_last_frame(&mut recv)
        .await
        .map_err(|_| HandshakeError::Abort("malformed handshake"))?
        .decode_header()
        .map_err(|_| HandshakeError::Abort("malformed handshake"))?;

    let result = accept_hello(shared, &hello).await;
    let welcome = match &result {
        Ok((state, resumed)) => {
            let now = now_secs();
            let claims = TokenClaims {
                session_id: state.id,
                issued_at: now,
                expires_at: now.saturating_add(shared.config.token_lifetime.as_secs()),
            };
            Welcome {
                code: Code::Ok.as_u32(),
                message: String::new(),
                session_id: state.id.to_string(),
                session_token: token::sign(&shared.key, &claims),
                user_id: state.user_id(),
                resumed: *resumed,
                max_message_size: shared.config.limits.max_message_size as u64,
            }
        }
        Err(HandshakeError::Refuse(status, _)) => Welcome {
            code: status.code().as_u32(),
            message: status.message().to_owned(),
            ..Default::default()
        },
        Err(HandshakeError::Abort(_)) => Welcome::default(),
    };
    let head = frame::encode_head(None, &welcome, 0);
    let (state, resumed) = match result {
        Ok(accepted) => accepted,
        Err(refusal) => {
            // Deliver the reason in-band before the connection is closed; the close reason
            // repeats it for a client that misses the frame.
            if write_frame_and_finish(&mut send, head, bytes::Bytes::new())
                .await
                .is_ok()
            {
                let _ = tokio::time::timeout(REFUSAL_FLUSH, send.stopped()).await;
            }
            return Err(refusal);
        }
    };
    let (state, replaced) = shared.sessions.attach(state, conn.clone());
    if let Some(old) = replaced {
        if old.stable_id() != conn.stable_id() {
            old.close(
                close::connection::KICKED.into(),
                b"session resumed on another connection",
            );
        }
    }
    if write_frame_and_finish(&mut send, head, bytes::Bytes::new())
        .await
        .is_err()
    {
        if state.detach(conn) {
            shared.sessions.evict_if_idle(state.id);
        }
        return Err(HandshakeError::Abort(
            "connection lost during the handshake",
        ));
    }
    tracing::info!(session = %state.id, resumed, user = ?state.user_id(), "session established");
    Ok(state)
}

/// Decides the session a `Hello` gets: a new one, or the one its token names.
async fn accept_hello(
    shared: &Arc<Shared>,
    hello: &Hello,
) -> Result<(Arc<SessionState>, bool), HandshakeError> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(HandshakeError::Refuse(
            Status::failed_precondition(format!(
                "protocol version {} is not supported (this server speaks {PROTOCOL_VERSION})",
                hello.protocol_version
            )),
            close::connection::HANDSHAKE_REFUSED,
        ));
    }
    let now = now_secs();
    let refuse = |status: Status, code| Err(HandshakeError::Refuse(status, code));
    let internal = |e: StateError| {
        tracing::error!(error = %e, "session store failed");
        HandshakeError::Refuse(
            Status::internal("session store unavailable"),
            close::connection::HANDSHAKE_REFUSED,
        )
    };
    if hello.resume_token.is_empty() {
        let id = SessionId::random().ok_or_else(|| {
            HandshakeError::Refuse(
                Status::internal("random generator failed"),
                close::connection::HANDSHAKE_REFUSED,
            )
        })?;
        let stored = StoredSession {
            id,
            user_id: None,
            created_at: now,
            last_seen: now,
        };
        shared
            .store
            .insert_session(stored, &shared.node_id)
            .await
            .map_err(internal)?;
        let state = shared
            .sessions
            .insert_or_get(Arc::new(SessionState::new(&stored)));
        return Ok((state, false));
    }
    let claims = match token::verify(&shared.key, &hello.resume_token, now) {
        Ok(claims) => claims,
        Err(e) => {
            return refuse(
                Status::unauthenticated(e.to_string()),
                close::connection::HANDSHAKE_REFUSED,
            )
        }
    };
    let id = claims.session_id;
    let idle_limit = shared.config.session_idle_timeout.as_secs();
    if let Some(state) = shared.sessions.get(id) {
        state.touch(now);
        shared
            .store
            .attach(id, &shared.node_id, now)
            .await
            .map_err(internal)?;
        return Ok((state, true));
    }
    let stored = shared.store.load_session(id).await.map_err(internal)?;
    let Some(stored) = stored else {
        return refuse(
            Status::unauthenticated("session not found: it expired or was ended"),
            close::connection::SESSION_EXPIRED,
        );
    };
    if now.saturating_sub(stored.last_seen) > idle_limit {
        let _ = shared.store.delete_session(id).await;
        return refuse(
            Status::unauthenticated("session expired after being idle"),
            close::connection::SESSION_EXPIRED,
        );
    }
    shared
        .store
        .attach(id, &shared.node_id, now)
        .await
        .map_err(internal)?;
    let state = shared
        .sessions
        .insert_or_get(Arc::new(SessionState::new(&stored)));
    state.touch(now);
    Ok((state, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, R, F: FnOnce(A, B) -> R>(_: &F) -> usize {
        size_of::<R>()
    }

    /// A connected session's task is the size of this future, so keep the one-off handshake
    /// state out of it (1,488 bytes with both handshakes inline, 400 without, in Rust 1.95).
    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = future_size::<Arc<Shared>, quinn::Incoming, _, _>(&serve_connection);
        assert!(size <= 512, "serve_connection's future is {size} bytes");
    }
}
