//! Publishing on a short second session while reading is paused.
//!
//! The bus asks for it with
//! [`Action::SidePublish`](pgnotify_core::bus::Action::SidePublish) when a
//! full subscriber has paused reading: an answer on the listening
//! connection would wait behind the notifications nobody reads (see the
//! core's `side_publish.rs` for when and why). This module opens a
//! [`SqlSession`] to the listener's host, runs the publishes in one
//! transaction, and reports the outcome to the bus from a task of its own.

use std::sync::Arc;
use std::time::Duration;

use pgnotify_core::bus::{SidePublish, SidePublishOutcome};
use pgnotify_core::protocol::DEFAULT_MAX_FRAME_LEN;

use crate::runtime::{Runtime, with_deadline};
use crate::shared::Shared;
use crate::sql::{SqlError, SqlSession};
use crate::tls::TlsConnector;

/// How long the transaction may take once the session is open when no
/// `connect_timeout` is configured (opening has its own limit).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `publish` on a task of its own and hands the outcome to the bus.
pub(crate) fn spawn(shared: &Arc<Shared>, publish: SidePublish, tls: Option<TlsConnector>) {
    let shared = shared.clone();
    let runtime = shared.runtime.clone();
    runtime.clone().spawn(Box::pin(async move {
        let outcome = run(&*runtime, &publish, tls).await;
        shared.command(|state, now| state.bus.handle_side_publish(now, publish.id, outcome));
    }));
}

async fn run(
    runtime: &dyn Runtime,
    publish: &SidePublish,
    tls: Option<TlsConnector>,
) -> SidePublishOutcome {
    let mut session =
        match SqlSession::open(runtime, &publish.session, DEFAULT_MAX_FRAME_LEN, tls).await {
            Ok(session) => session,
            Err(e) => return SidePublishOutcome::NotSent(e.to_string()),
        };
    let limit = publish
        .session
        .connect
        .connect_timeout
        .unwrap_or(SEND_TIMEOUT);
    let sent = session.call_all(publish.statement().to_owned(), publish.items.clone());
    let outcome = match with_deadline(runtime, Some(runtime.now() + limit), sent).await {
        Some(Ok(_)) => SidePublishOutcome::Committed,
        Some(Err(SqlError::Server(e))) => SidePublishOutcome::Refused(e),
        Some(Err(e)) => SidePublishOutcome::Lost(e.to_string()),
        None => SidePublishOutcome::Lost(format!("no answer within {limit:?}")),
    };
    session.close().await;
    outcome
}
