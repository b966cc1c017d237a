//! The signals that stop a server: Ctrl-C, and SIGTERM on Unix.

/// Ctrl-C and (on Unix) SIGTERM, caught from the moment this is made: a signal that arrives
/// while a server is still starting stops it gracefully once it runs, instead of killing it.
///
/// ```no_run
/// # async fn run(server: fluxon_server::Server) -> std::io::Result<()> {
/// let mut signals = fluxon_server::StopSignals::listen()?; // before anything slow
/// // ... bind, announce ...
/// signals.recv().await;
/// server.shutdown(std::time::Duration::from_secs(10)).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts catching the signals (needs a Tokio runtime).
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next one.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }

    /// Catches the signals from now on and waits for one; when they cannot be caught (logged),
    /// waits for Ctrl-C alone.
    pub async fn once() {
        match Self::listen() {
            Ok(mut signals) => signals.recv().await,
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
