//! Group commit for [`Durable::notify`]: calls made while a transaction of
//! durable publishes is in flight share the next one.
//!
//! Every durable commit of a schema passes through one lock (see
//! [`pgnotify_core::durable`]), so one commit per call caps the rate at one
//! lock hand-over and one commit per message. Here the first call starts a
//! flusher task; it takes everything queued (up to [`MAX_GROUP`] calls and
//! [`MAX_GROUP_BYTES`] of payload), sends it as one transaction of
//! `publish($1, $2)` calls (Parse/Bind/Execute each, one Sync), hands each
//! call its result and goes on until the queue is empty. A lone call goes
//! out at once; under load, each round trip carries what arrived during the
//! last one.
//!
//! A transaction the server refuses (one call's payload over the bound, a
//! serialization failure) was rolled back whole, so its calls are sent
//! again one by one and only the bad one fails. A transaction whose session
//! broke after it was sent may have committed: each of its calls gets
//! [`DurableError::OutcomeUnknown`] and is not sent again.
//!
//! The flusher is a task of its own, so a caller that stops waiting
//! (drops its future) recalls nothing and strands no one else.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{Durable, DurableError, Statement};
use crate::signal::store_waker;
use crate::sql::SqlError;

/// The most calls one transaction carries.
pub(crate) const MAX_GROUP: usize = 1000;
/// The most payload bytes one transaction carries (a single larger call
/// still goes, alone).
pub(crate) const MAX_GROUP_BYTES: usize = 4 << 20;

/// Calls waiting for a transaction, and whether a flusher is running.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    state: Mutex<OutboxState>,
}

#[derive(Debug, Default)]
struct OutboxState {
    queue: VecDeque<Call>,
    flushing: bool,
}

#[derive(Debug)]
struct Call {
    channel: String,
    payload: String,
    slot: Arc<Slot>,
}

/// Where one call's result lands.
#[derive(Debug, Default)]
struct Slot {
    inner: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    result: Option<Result<u64, DurableError>>,
    waker: Option<Waker>,
}

impl Slot {
    fn set(&self, result: Result<u64, DurableError>) {
        let waker = {
            let mut inner = self.inner.lock().expect("slot lock");
            inner.result = Some(result);
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll(&self, cx: &Context<'_>) -> Poll<Result<u64, DurableError>> {
        let mut inner = self.inner.lock().expect("slot lock");
        match inner.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                store_waker(&mut inner.waker, cx);
                Poll::Pending
            }
        }
    }
}

impl Durable {
    /// Queues one call and waits for its result; starts a flusher if none runs.
    pub(super) async fn publish_grouped(
        &self,
        channel: &str,
        payload: &str,
    ) -> Result<u64, DurableError> {
        let slot = Arc::new(Slot::default());
        let start = {
            let mut state = self.pool.outbox.state.lock().expect("outbox lock");
            state.queue.push_back(Call {
                channel: channel.to_owned(),
                payload: payload.to_owned(),
                slot: slot.clone(),
            });
            !std::mem::replace(&mut state.flushing, true)
        };
        if start {
            let durable = self.clone();
            self.runtime()
                .spawn(Box::pin(async move { durable.flush().await }));
        }
        std::future::poll_fn(|cx| slot.poll(cx)).await
    }

    /// Sends groups until the queue is empty.
    async fn flush(self) {
        loop {
            let group = {
                let mut state = self.pool.outbox.state.lock().expect("outbox lock");
                if state.queue.is_empty() {
                    state.flushing = false;
                    return;
                }
                take_group(&mut state.queue)
            };
            let results = self.send_group(&group).await;
            for (call, result) in group.into_iter().zip(results) {
                call.slot.set(result);
            }
        }
    }

    /// One transaction for `group`; refused whole, then call by call.
    async fn send_group(&self, group: &[Call]) -> Vec<Result<u64, DurableError>> {
        let schema = self.schema.name();
        match self.send_calls(group).await {
            Ok(tickets) => tickets.into_iter().map(Ok).collect(),
            Err(SqlError::Server(_)) if group.len() > 1 => {
                let mut results = Vec::with_capacity(group.len());
                for call in group {
                    let one = self.send_calls(std::slice::from_ref(call)).await;
                    results.push(
                        one.map(|tickets| tickets[0])
                            .map_err(|e| DurableError::from_sql(schema, e)),
                    );
                }
                results
            }
            Err(e) => {
                let error = DurableError::from_sql(schema, e);
                group.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }

    /// The calls as one transaction; each call's ticket.
    async fn send_calls(&self, calls: &[Call]) -> Result<Vec<u64>, SqlError> {
        let items = calls
            .iter()
            .map(|c| (c.channel.clone(), c.payload.clone()))
            .collect();
        let sql = self.schema.publish_call_sql();
        let rows = self.run_raw(Statement::Calls(sql, items)).await?;
        let tickets: Option<Vec<u64>> = rows
            .iter()
            .map(|row| row.first()?.as_deref()?.parse().ok())
            .collect();
        match tickets {
            Some(tickets) if tickets.len() == calls.len() => Ok(tickets),
            // Committed, but the answer makes no sense: say so to each call.
            _ => Err(SqlError::Lost(format!(
                "publish() returned {} rows for {} calls",
                rows.len(),
                calls.len()
            ))),
        }
    }
}

/// The next group: at least one call, then as many as fit.
fn take_group(queue: &mut VecDeque<Call>) -> Vec<Call> {
    let mut group = Vec::new();
    let mut bytes = 0;
    while let Some(next) = queue.front() {
        let size = next.payload.len() + next.channel.len();
        if !group.is_empty() && (group.len() >= MAX_GROUP || bytes + size > MAX_GROUP_BYTES) {
            break;
        }
        bytes += size;
        group.extend(queue.pop_front());
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(bytes: usize) -> Call {
        Call {
            channel: String::new(),
            payload: "x".repeat(bytes),
            slot: Arc::default(),
        }
    }

    #[test]
    fn groups_are_bounded_by_count_and_bytes_and_never_empty() {
        let mut queue: VecDeque<Call> = (0..MAX_GROUP + 5).map(|_| call(1)).collect();
        assert_eq!(take_group(&mut queue).len(), MAX_GROUP);
        assert_eq!(take_group(&mut queue).len(), 5);
        let mut queue: VecDeque<Call> = [3 << 20, 2 << 20, 1, 8 << 20].map(call).into();
        assert_eq!(
            take_group(&mut queue).len(),
            1,
            "3 MiB + 2 MiB is over the bound"
        );
        assert_eq!(take_group(&mut queue).len(), 2);
        assert_eq!(
            take_group(&mut queue).len(),
            1,
            "a call over the bound goes alone"
        );
        assert!(queue.is_empty());
    }
}
