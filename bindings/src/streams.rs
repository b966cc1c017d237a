//! Reading a streaming call's replies from a foreign language: the generated per-method stream
//! objects (`next()` until nothing, `cancel()`) are thin wrappers around [`StreamReader`].

use std::fmt;

use fluxon_client::Streaming;
use prost::Message;
use tokio::sync::{watch, Mutex};

use crate::foreign::exit_safe;
use crate::FluxonError;

/// The replies of one streaming call, read one at a time by whoever awaits [`next`](Self::next);
/// [`cancel`](Self::cancel) ends the call from any thread.
pub struct StreamReader<T> {
    replies: Mutex<Option<Streaming<T>>>,
    cancelled: watch::Sender<bool>,
}

impl<T> fmt::Debug for StreamReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("cancelled", &*self.cancelled.borrow())
            .finish_non_exhaustive()
    }
}

impl<T: Message + Default> StreamReader<T> {
    /// Reads `replies`.
    pub fn new(replies: Streaming<T>) -> Self {
        Self {
            replies: Mutex::new(Some(replies)),
            cancelled: watch::Sender::new(false),
        }
    }

    /// The next reply; `None` once the call has ended with success or was cancelled. A failed
    /// call is an error once, then `None`.
    pub async fn next(&self) -> Result<Option<T>, FluxonError> {
        let mut cancelled = self.cancelled.subscribe();
        let mut replies = self.replies.lock().await;
        if *cancelled.borrow() {
            *replies = None;
        }
        let Some(stream) = replies.as_mut() else {
            return Ok(None);
        };
        let next = tokio::select! {
            next = exit_safe(stream.message()) => next,
            _ = cancelled.wait_for(|c| *c) => Ok(None),
        };
        match next {
            Ok(Some(reply)) => Ok(Some(reply)),
            Ok(None) => {
                // Ended (or cancelled): dropping the stream lets the server go.
                *replies = None;
                Ok(None)
            }
            Err(status) => {
                *replies = None;
                Err(status.into())
            }
        }
    }

    /// Ends the call: the server stops sending, a pending or later `next` returns `None`.
    pub fn cancel(&self) {
        self.cancelled.send_replace(true);
        if let Ok(mut replies) = self.replies.try_lock() {
            *replies = None;
        }
    }
}
