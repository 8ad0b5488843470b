//! The checks that need a short session of their own: the server guard's
//! queue reading, and the delivery probe behind a pooler.
//!
//! The bus asks for both with
//! [`Action::SideCheck`](pgnotify_core::bus::Action::SideCheck). While
//! reading is paused for an absorbing subscriber the listening connection
//! cannot answer (its backend is blocked writing the backlog we are not
//! reading), so a second session to the same host runs
//! `SELECT pg_notification_queue_usage()` and ends; behind a pooler, a
//! second session sends the delivery probe's NOTIFY. The statement and
//! what its rows mean live in the core ([`SideCheck`]); this module runs it
//! on a [`SqlSession`] and reports the result to the bus from a task of its
//! own, so the driver loop never waits on it.

use std::sync::Arc;
use std::time::Duration;

use pgnotify_core::bus::{CheckKind, SideCheck};
use pgnotify_core::protocol::DEFAULT_MAX_FRAME_LEN;

use crate::runtime::{Runtime, with_deadline};
use crate::shared::Shared;
use crate::sql::SqlSession;
use crate::tls::TlsConnector;

/// How long one check may take when no `connect_timeout` is configured.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `check` on a task of its own and hands the result to the bus.
/// `tls` is the driver's connector for the check's TLS settings, when it
/// could make one (otherwise the session makes its own, and reports why it
/// cannot).
pub(crate) fn spawn_check(shared: &Arc<Shared>, check: SideCheck, tls: Option<TlsConnector>) {
    let shared = shared.clone();
    let runtime = shared.runtime.clone();
    runtime.clone().spawn(Box::pin(async move {
        let limit = check.connect.connect_timeout.unwrap_or(CHECK_TIMEOUT);
        let deadline = Some(runtime.now() + limit);
        let result = with_deadline(&*runtime, deadline, run(&*runtime, &check, tls))
            .await
            .unwrap_or_else(|| Err(format!("no answer within {limit:?}")));
        shared.command(|state, now| match check.kind {
            CheckKind::DeliveryProbe { .. } => {
                state.bus.handle_delivery_probe(now, result.map(drop));
            }
            _ => state.bus.handle_server_queue_usage(now, result),
        });
    }));
}

/// Opens the session, runs the check's statement, says goodbye.
async fn run(
    runtime: &dyn Runtime,
    check: &SideCheck,
    tls: Option<TlsConnector>,
) -> Result<f64, String> {
    let mut session = SqlSession::open(runtime, &check.target(), DEFAULT_MAX_FRAME_LEN, tls)
        .await
        .map_err(|e| e.to_string())?;
    let rows = session.query(check.sql()).await.map_err(|e| e.to_string());
    let outcome = check.outcome(rows.as_deref().map_err(Clone::clone));
    session.close().await;
    outcome
}
