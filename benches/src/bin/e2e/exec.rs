//! The three runtimes a listener runs on, behind one small interface: block
//! on a future, spawn a task and await its result, sleep.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

/// A boxed, sendable future.
pub(crate) type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Which runtime a listener and its subscriber tasks run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tokio,
    Smol,
    AsyncStd,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tokio => "tokio",
            Self::Smol => "smol",
            Self::AsyncStd => "async-std",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tokio" => Ok(Self::Tokio),
            "smol" => Ok(Self::Smol),
            "async-std" => Ok(Self::AsyncStd),
            other => Err(format!(
                "unknown runtime {other:?} (tokio, smol, async-std)"
            )),
        }
    }
}

/// One runtime, ready to run futures. Tokio is multi-threaded with its
/// default worker count (one per core); smol uses its global executor and
/// async-std its own, both as they come.
pub(crate) struct Exec {
    kind: Kind,
    tokio: Option<tokio::runtime::Runtime>,
}

impl Exec {
    pub(crate) fn new(kind: Kind) -> Self {
        let tokio = (kind == Kind::Tokio).then(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("build a tokio runtime")
        });
        Self { kind, tokio }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Runs `future` to completion on the calling thread, inside the runtime.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.tokio {
            Some(rt) => rt.block_on(future),
            None if self.kind == Kind::Smol => smol::block_on(future),
            None => async_std::task::block_on(future),
        }
    }

    /// Spawns `future` as a task; the returned future yields its output.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        match &self.tokio {
            Some(rt) => {
                let handle = rt.spawn(future);
                Box::pin(async move { handle.await.expect("a benchmark task panicked") })
            }
            None if self.kind == Kind::Smol => Box::pin(smol::spawn(future)),
            None => Box::pin(async_std::task::spawn(future)),
        }
    }

    /// Sleeps on this runtime's timer (call from within [`block_on`](Self::block_on)).
    pub(crate) async fn sleep(&self, duration: Duration) {
        match self.kind {
            Kind::Tokio => tokio::time::sleep(duration).await,
            Kind::Smol => {
                smol::Timer::after(duration).await;
            }
            Kind::AsyncStd => async_std::task::sleep(duration).await,
        }
    }
}
