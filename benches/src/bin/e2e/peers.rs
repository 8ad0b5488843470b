//! The peers a user would pick instead of pgnotify (issue 13), measured in
//! the same runs: sqlx's `PgListener` read directly (one consumer), and "the
//! forge design": one `PgListener` whose task forwards every payload as a
//! `String` into a `tokio::sync::broadcast` channel with one receiver per
//! subscriber. Both run on the benchmark's multi-thread tokio runtime.

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

/// Row name of sqlx's `PgListener` read by one task.
pub(crate) const SQLX: &str = "sqlx PgListener";

/// Row name of the forge design.
pub(crate) const FORGE: &str = "forge: sqlx -> broadcast<String>";

/// A `PgListener` connected to `url` and LISTENing on `channel`.
pub(crate) async fn sqlx_listener(url: &str, channel: &str) -> PgListener {
    let mut listener = PgListener::connect(url).await.expect("sqlx connects");
    listener.listen(channel).await.expect("sqlx LISTEN");
    listener
}

/// The forge design's fan-out: a broadcast channel and `subs` receivers,
/// made before anything is sent so each receiver sees everything.
///
/// `capacity` must hold everything a burst sends (rounded up to a power of
/// two by tokio) so that no receiver lags: the design is then lossless, as
/// the user measured it.
pub(crate) fn forge_receivers(
    capacity: usize,
    subs: usize,
) -> (broadcast::Sender<String>, Vec<broadcast::Receiver<String>>) {
    let (tx, _) = broadcast::channel(capacity.max(2));
    let receivers = (0..subs).map(|_| tx.subscribe()).collect();
    (tx, receivers)
}

/// The forge design's forwarding task: reads `listener` and sends each
/// payload, copied into a `String`, until `last(payload)` says that one was
/// the last. Returns how many it forwarded.
pub(crate) async fn forward(
    mut listener: PgListener,
    tx: broadcast::Sender<String>,
    mut last: impl FnMut(&str) -> bool + Send,
) -> u64 {
    let mut sent = 0;
    loop {
        let notification = listener.recv().await.expect("sqlx recv");
        let payload = notification.payload();
        let done = last(payload);
        // A send fails only when every receiver is gone.
        if tx.send(payload.to_owned()).is_err() {
            return sent;
        }
        sent += 1;
        if done {
            return sent;
        }
    }
}

/// What one broadcast receiver got: notifications, lag events, the
/// notifications those lags skipped, and payload bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) got: u64,
    pub(crate) lags: u64,
    pub(crate) missed: u64,
    pub(crate) bytes: usize,
}

/// Counts what a forge subscriber receives until `last(payload)` is true
/// (that one not counted) or the sender is gone.
pub(crate) async fn count_broadcast(
    mut rx: broadcast::Receiver<String>,
    mut last: impl FnMut(&str) -> bool,
) -> Received {
    let mut r = Received::default();
    loop {
        match rx.recv().await {
            Ok(payload) => {
                if last(&payload) {
                    return r;
                }
                r.got += 1;
                r.bytes += payload.len();
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                r.lags += 1;
                r.missed += missed;
            }
            Err(broadcast::error::RecvError::Closed) => return r,
        }
    }
}
