//! Waiting for Ctrl-C (SIGINT) or SIGTERM, so that long-running commands
//! close their listener and clean up before exiting.

/// Installed SIGINT and SIGTERM handlers.
///
/// Install it before anything a signal should interrupt cleanly: from then
/// on these signals no longer end the process by themselves, so the command
/// must select on [`wait`](Self::wait) wherever it may wait.
#[derive(Debug)]
pub(crate) struct Shutdown {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Shutdown {
    /// Installs the handlers. If that fails, [`wait`](Self::wait) never
    /// completes and the signals keep their default effect.
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = signal(SignalKind::interrupt())
                .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)))
                .ok();
            Self { signals }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Completes on the next SIGINT or SIGTERM.
    pub(crate) async fn wait(&mut self) {
        #[cfg(unix)]
        {
            let Some((interrupt, terminate)) = &mut self.signals else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
