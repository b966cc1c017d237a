//! Numeric codes Fluxon puts on closed connections and reset streams.
//!
//! QUIC lets an application close a connection with a code and a reason, and reset or stop a
//! single stream with a code. These are Fluxon's values; `docs/protocol.md` lists them too.

/// Application close codes for a whole connection.
pub mod connection {
    /// The peer closed normally (client dropped its connection, or logged out and left).
    pub const NORMAL: u32 = 0;
    /// The server is shutting down; the client may reconnect later.
    pub const SHUTDOWN: u32 = 1;
    /// The peer broke the protocol (bad handshake, unknown stream kind, ...).
    pub const PROTOCOL_ERROR: u32 = 2;
    /// The handshake was refused (bad, expired or foreign session token, unknown version).
    pub const HANDSHAKE_REFUSED: u32 = 3;
    /// An operator ended this session (console `kick`) or the session was logged out elsewhere.
    pub const KICKED: u32 = 4;
    /// The server already has its maximum number of connections.
    pub const SERVER_BUSY: u32 = 5;
    /// The session expired after being idle too long.
    pub const SESSION_EXPIRED: u32 = 6;

    /// A short, stable description of a close code, for error messages.
    pub fn describe(code: u64) -> &'static str {
        match code {
            0 => "closed normally",
            1 => "server shutting down",
            2 => "protocol error",
            3 => "handshake refused",
            4 => "session ended by the server",
            5 => "server busy (too many connections)",
            6 => "session expired",
            _ => "unknown close code",
        }
    }
}

/// Codes used when one side resets (`reset`) or stops (`stop`) a single stream.
pub mod stream {
    /// The caller gave up on the call (its future was dropped or its deadline passed).
    pub const CANCELLED: u32 = 0;
    /// The receiver will not read more: the message exceeds its size limit.
    pub const TOO_LARGE: u32 = 1;
    /// The receiver saw bytes it could not decode.
    pub const MALFORMED: u32 = 2;
    /// The receiver is shutting down.
    pub const SHUTDOWN: u32 = 3;
    /// The sender of a stream was too slow to deliver a complete request.
    pub const TIMED_OUT: u32 = 4;
    /// The callee failed while handling a request it had taken (its handler panicked): the
    /// request may have had effects, so the caller must not retry it blindly.
    pub const ABORTED: u32 = 5;
}
