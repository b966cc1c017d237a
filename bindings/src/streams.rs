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
        if !matches!(next, Ok(Some(_))) {
            // Ended, failed or cancelled: dropping the stream lets the server go.
            *replies = None;
        }
        Ok(next?)
    }

    /// Ends the call: the server stops sending, a pending or later `next` returns `None`.
    pub fn cancel(&self) {
        self.cancelled.send_replace(true);
        if let Ok(mut replies) = self.replies.try_lock() {
            *replies = None;
        }
    }
}

/// The sending side of a client-streaming or bidirectional call, for the generated call
/// objects: `send` one message at a time, then `finish`.
pub struct RequestWriter<T> {
    sink: Mutex<Option<fluxon_client::RequestSink<T>>>,
}

impl<T> fmt::Debug for RequestWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestWriter").finish_non_exhaustive()
    }
}

impl<T: Message> RequestWriter<T> {
    /// Writes into `sink`.
    pub fn new(sink: fluxon_client::RequestSink<T>) -> Self {
        Self {
            sink: Mutex::new(Some(sink)),
        }
    }

    /// Sends one message, waiting while the server's flow control holds it back. After
    /// `finish` or `cancel`, or once the server has ended the call, it fails (`Cancelled`, or the
    /// status of a refused message): the call's own outcome comes from its replies.
    pub async fn send(&self, message: T) -> Result<(), FluxonError> {
        let mut sink = self.sink.lock().await;
        let Some(open) = sink.as_mut() else {
            return Err(
                fluxon_client::Status::cancelled("the call's requests are finished").into(),
            );
        };
        Ok(exit_safe(open.send(&message)).await?)
    }

    /// No more messages follow.
    pub async fn finish(&self) {
        if let Some(sink) = self.sink.lock().await.take() {
            sink.finish();
        }
    }

    /// Abandons the requests: the server stops the call.
    pub fn cancel(&self) {
        if let Ok(mut sink) = self.sink.try_lock() {
            if let Some(sink) = sink.take() {
                sink.cancel();
            }
        }
    }
}
