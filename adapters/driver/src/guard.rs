//! The checks that need a short session of their own: the server guard's
//! queue reading, and the delivery probe behind a pooler.
//!
//! While reading is paused for an absorbing subscriber the bus asks for
//! [`Action::CheckServerQueue`](pgnotify_core::bus::Action::CheckServerQueue):
//! the listening connection cannot answer (its backend is blocked writing
//! the backlog we are not reading), so a second session to the same host
//! runs `SELECT pg_notification_queue_usage()` and ends. The session's
//! protocol lives in the core ([`QueueUsageSession`]); this module only
//! moves its bytes, and reports the result to the bus from a task of its
//! own, so the driver loop never waits on it.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use pgnotify_core::bus::{CheckKind, QueueUsageSession, ServerQueueCheck, SessionStatus};

use crate::connect::connect;
use crate::runtime::{Runtime, with_deadline};
use crate::shared::Shared;
use crate::stream::MaybeTlsStream;
use crate::tls::{TlsConnector, TlsError};

/// How long one check may take when no `connect_timeout` is configured.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `check` on a task of its own and hands the result to the bus.
pub(crate) fn spawn_check(
    shared: &Arc<Shared>,
    check: ServerQueueCheck,
    tls: Result<TlsConnector, TlsError>,
) {
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

/// Connects, runs the session to its end and returns its result.
async fn run(
    runtime: &dyn Runtime,
    check: &ServerQueueCheck,
    tls: Result<TlsConnector, TlsError>,
) -> Result<f64, String> {
    let target = &check.connect;
    let transport = connect(
        runtime,
        &target.host,
        target.connect_timeout,
        &target.keepalive,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut stream = MaybeTlsStream::new(transport);
    let mut session = check.session();
    let mut out = Vec::new();
    let mut input = vec![0; 8 * 1024];
    loop {
        let status = session.poll_status();
        write_all(&mut stream, &mut session, &mut out).await?;
        match status {
            SessionStatus::Done(result) => return result,
            SessionStatus::StartTls => {
                let connector = tls.as_ref().map_err(ToString::to_string)?;
                let binding = stream
                    .start_tls(connector, &check.tls.server_name)
                    .await
                    .map_err(|e| e.to_string())?;
                session.handle_tls_established(binding);
            }
            _ => match poll_fn(|cx| stream.poll_read(cx, &mut input)).await {
                Ok(0) => session.handle_closed("end of stream"),
                Ok(n) => session.handle_input(&input[..n]),
                Err(e) => session.handle_closed(&e.to_string()),
            },
        }
    }
}

/// Writes everything the session has to send.
async fn write_all(
    stream: &mut MaybeTlsStream,
    session: &mut QueueUsageSession,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    session.poll_transmit(out);
    let mut pending = &out[..];
    while !pending.is_empty() {
        let n = poll_fn(|cx| stream.poll_write(cx, pending))
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed while writing".to_owned());
        }
        pending = &pending[n..];
    }
    poll_fn(|cx| stream.poll_flush(cx))
        .await
        .map_err(|e| e.to_string())
}
