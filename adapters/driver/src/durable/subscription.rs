//! One durable subscriber: the live subscription, the reader that merges it
//! with the table, and the page reads the reader asks for.

use std::fmt;
use std::time::Duration;

use pgnotify_core::durable::{DurableEvent, DurableReader, Page, ReaderStats, Since};
use pgnotify_core::{EndReason, Event};

use super::{Durable, DurableError, Statement};
use crate::runtime::Alarm;
use crate::subscription::Subscription;

/// The first wait before reading a page again after a passing failure; it
/// doubles up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(100);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Every durable message on one channel after a cursor, exactly once, in
/// position order, with no gap items: made by [`Durable::subscribe`].
///
/// Where the live stream may have missed something (a reconnect, an
/// overflow of its queue, a position it did not expect) the subscription
/// reads the table from its cursor, so such an event costs latency, not
/// messages. Messages too long for a NOTIFY are read from the table too.
/// The only items besides messages are
/// [`Expired`](DurableEvent::Expired), for messages pruned before they were
/// read.
pub struct DurableSubscription {
    durable: Durable,
    live: Subscription,
    reader: DurableReader,
    retry_wait: Duration,
}

impl fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableSubscription")
            .field("channel", &self.live.channel())
            .field("cursor", &self.reader.cursor())
            .field("catching_up", &self.reader.is_catching_up())
            .finish_non_exhaustive()
    }
}

impl DurableSubscription {
    pub(super) fn new(durable: Durable, live: Subscription, since: Since) -> Self {
        let reader = DurableReader::new(since).with_page_limit(durable.page_limit);
        Self {
            durable,
            live,
            reader,
            retry_wait: FIRST_RETRY_WAIT,
        }
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        self.live.channel()
    }

    /// The position of the last message received (or about to be);
    /// `None` before the first `recv` of a [`Since::Now`] subscription.
    pub fn cursor(&self) -> Option<u64> {
        self.reader.cursor()
    }

    /// What the subscription has done: messages from live notifications
    /// and from pages, pages read, duplicates dropped.
    pub fn stats(&self) -> ReaderStats {
        self.reader.stats()
    }

    /// The next message (or [`Expired`](DurableEvent::Expired) item).
    ///
    /// Passing failures (the server restarting, a lost session) are retried
    /// with backoff inside, and cost only time. An error is returned for
    /// what will not pass by itself (the schema missing, a cursor that is
    /// not this channel's, the listener closed); calling `recv` again tries
    /// again from the same cursor.
    ///
    /// Cancel safe: dropping the future loses nothing.
    pub async fn recv(&mut self) -> Result<DurableEvent, DurableError> {
        loop {
            if let Some(event) = self.reader.poll_event() {
                return Ok(event);
            }
            if self.reader.poll_request().is_some() {
                self.read_page().await?;
                continue;
            }
            match self.live.recv().await {
                Some(Event::Notification(n)) => {
                    if let Err(e) = self.reader.handle_live(&n.payload) {
                        tracing::warn!(channel = self.live.channel(), error = %e,
                            "ignored a notification on a durable channel");
                    }
                }
                Some(Event::Gap(_)) => self.reader.handle_gap(),
                Some(_) => {}
                None => {
                    let reason = self.live.end_reason().unwrap_or(EndReason::BusClosed);
                    return Err(DurableError::Ended(reason));
                }
            }
        }
    }

    /// Reads the page the reader asks for, retrying passing failures.
    /// With no page asked for, does nothing.
    pub(super) async fn read_page(&mut self) -> Result<(), DurableError> {
        while let Some(request) = self.reader.poll_request() {
            let sql =
                self.durable
                    .schema
                    .page_sql(self.live.channel(), request.after, request.limit);
            match self.durable.run_raw(Statement::Simple(sql)).await {
                Ok(rows) => {
                    self.retry_wait = FIRST_RETRY_WAIT;
                    let page = Page::from_rows(rows)?;
                    self.reader.handle_page(request, page)?;
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    if let Some(reason) = self.live.end_reason() {
                        return Err(DurableError::Ended(reason));
                    }
                    tracing::debug!(channel = self.live.channel(), error = %e,
                        "reading a durable page failed; trying again");
                    self.wait_to_retry().await;
                }
                Err(e) => return Err(DurableError::from_sql(self.durable.schema.name(), e)),
            }
        }
        Ok(())
    }

    async fn wait_to_retry(&mut self) {
        let runtime = self.durable.runtime();
        let deadline = runtime.now() + self.retry_wait;
        let mut alarm = Alarm::default();
        std::future::poll_fn(|cx| alarm.poll_at(&*runtime, deadline, cx)).await;
        self.retry_wait = (self.retry_wait * 2).min(MAX_RETRY_WAIT);
    }
}
