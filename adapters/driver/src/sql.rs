//! A plain SQL session beside the listening connection: one connection that
//! runs simple queries one after another, for durable channels (install,
//! publish, reading pages).
//!
//! The protocol is the core's [`Connection`]; this module only opens the
//! transport (TCP or unix, TLS as the listener's settings say), moves bytes
//! and waits for each query's one result.

use std::fmt;
use std::future::poll_fn;
use std::time::Duration;

use pgnotify_core::bus::SessionTarget;
use pgnotify_core::protocol::{CommandId, Connection, ServerError, WireEvent};

use crate::connect::connect;
use crate::runtime::{Runtime, with_deadline};
use crate::stream::MaybeTlsStream;
use crate::tls::TlsConnector;

/// How long opening a session may take when no `connect_timeout` is set.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows as the server printed them; `None` is NULL.
pub(crate) type Rows = Vec<Vec<Option<String>>>;

/// Why a query got no rows.
#[derive(Debug)]
pub(crate) enum SqlError {
    /// The session could not be opened, or broke: worth trying again on a
    /// new one.
    Unavailable(String),
    /// The session broke after the statement was sent: it may have run.
    Lost(String),
    /// The server answered the query with an error; the session is fine.
    Server(ServerError),
}

impl SqlError {
    /// Whether trying again later may succeed: the session was lost, or the
    /// server refused for a passing reason (shutting down, out of
    /// resources, a serialization failure or deadlock).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) | Self::Lost(_) => true,
            Self::Server(e) => {
                let code = e.code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "40001"
                    || code == "40P01"
            }
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "no session to the server: {why}"),
            Self::Lost(why) => write!(f, "the session to the server was lost: {why}"),
            Self::Server(e) => e.fmt(f),
        }
    }
}

/// One open session.
pub(crate) struct SqlSession {
    stream: MaybeTlsStream,
    conn: Connection,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl fmt::Debug for SqlSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSession")
            .field("phase", &self.conn.phase())
            .finish_non_exhaustive()
    }
}

impl SqlSession {
    /// Connects to `target` and runs the startup, within its
    /// `connect_timeout` (10 s when unset). TLS uses `tls`, or a connector
    /// made for the target's settings when `None`.
    pub(crate) async fn open(
        runtime: &dyn Runtime,
        target: &SessionTarget,
        max_frame_len: usize,
        tls: Option<TlsConnector>,
    ) -> Result<Self, SqlError> {
        let limit = target.connect.connect_timeout.unwrap_or(OPEN_TIMEOUT);
        let deadline = runtime.now() + limit;
        with_deadline(
            runtime,
            Some(deadline),
            Self::open_now(runtime, target, max_frame_len, tls),
        )
        .await
        .unwrap_or_else(|| {
            Err(SqlError::Unavailable(format!(
                "startup took longer than {limit:?}"
            )))
        })
    }

    async fn open_now(
        runtime: &dyn Runtime,
        target: &SessionTarget,
        max_frame_len: usize,
        tls: Option<TlsConnector>,
    ) -> Result<Self, SqlError> {
        let unavailable = |e: &dyn fmt::Display| SqlError::Unavailable(e.to_string());
        let connect_target = &target.connect;
        let transport = connect(
            runtime,
            &connect_target.host,
            connect_target.connect_timeout,
            &connect_target.keepalive,
        )
        .await
        .map_err(|e| unavailable(&e))?;
        let mut startup = target.startup.clone();
        startup.max_frame_len = startup.max_frame_len.max(max_frame_len);
        let mut session = Self {
            stream: MaybeTlsStream::new(transport),
            conn: Connection::new(startup),
            input: vec![0; 16 * 1024],
            output: Vec::new(),
        };
        loop {
            session.flush().await?;
            match session.conn.poll_event() {
                Some(WireEvent::Ready) => return Ok(session),
                Some(WireEvent::StartTls) => {
                    let connector = match &tls {
                        Some(connector) => connector.clone(),
                        None => {
                            TlsConnector::for_target(&target.tls).map_err(|e| unavailable(&e))?
                        }
                    };
                    let binding = session
                        .stream
                        .start_tls(&connector, &target.tls.server_name)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    session.conn.handle_tls_established(binding);
                }
                Some(WireEvent::Failed(e)) => return Err(unavailable(&e)),
                Some(_) => {}
                None => session.read().await?,
            }
        }
    }

    /// Runs `sql` (one or more statements) and returns every row.
    pub(crate) async fn query(&mut self, sql: String) -> Result<Rows, SqlError> {
        let id = self.conn.simple_query(sql);
        self.result_of(id).await
    }

    /// Calls `sql` (a statement with two `text` parameters) once per item,
    /// as one transaction, and returns each call's row
    /// ([`Connection::call_all`]).
    pub(crate) async fn call_all(
        &mut self,
        sql: String,
        items: Vec<(String, String)>,
    ) -> Result<Rows, SqlError> {
        let id = self.conn.call_all(sql, items);
        self.result_of(id).await
    }

    /// Sends what command `id` queued and waits for its result. A failure
    /// of the session from here on is [`SqlError::Lost`]: the statement may
    /// have run.
    async fn result_of(&mut self, id: CommandId) -> Result<Rows, SqlError> {
        let lost = |e: SqlError| match e {
            SqlError::Unavailable(why) => SqlError::Lost(why),
            other => other,
        };
        loop {
            self.flush().await.map_err(lost)?;
            match self.conn.poll_event() {
                Some(WireEvent::CommandComplete { id: done, result }) if done == id => {
                    return result.map(|r| r.rows).map_err(SqlError::Server);
                }
                Some(WireEvent::Failed(e)) => return Err(SqlError::Lost(e.to_string())),
                Some(_) => {}
                None => self.read().await.map_err(lost)?,
            }
        }
    }

    /// Whether the session can run another query.
    pub(crate) fn is_usable(&self) -> bool {
        self.conn.phase() == pgnotify_core::protocol::Phase::Ready
    }

    /// Writes what the connection has to send.
    async fn flush(&mut self) -> Result<(), SqlError> {
        self.output.clear();
        if !self.conn.poll_transmit(&mut self.output) {
            return Ok(());
        }
        let mut pending = &self.output[..];
        while !pending.is_empty() {
            let n = poll_fn(|cx| self.stream.poll_write(cx, pending))
                .await
                .map_err(|e| SqlError::Unavailable(e.to_string()))?;
            if n == 0 {
                return Err(SqlError::Unavailable(
                    "the connection closed while writing".to_owned(),
                ));
            }
            pending = &pending[n..];
        }
        poll_fn(|cx| self.stream.poll_flush(cx))
            .await
            .map_err(|e| SqlError::Unavailable(e.to_string()))
    }

    /// Reads what the server sent next into the connection.
    async fn read(&mut self) -> Result<(), SqlError> {
        let n = poll_fn(|cx| self.stream.poll_read(cx, &mut self.input))
            .await
            .map_err(|e| SqlError::Unavailable(e.to_string()))?;
        if n == 0 {
            return Err(SqlError::Unavailable(
                "the server closed the connection".to_owned(),
            ));
        }
        self.conn.handle_input(&self.input[..n]);
        Ok(())
    }

    /// Says goodbye (Terminate), best effort.
    pub(crate) async fn close(mut self) {
        self.conn.terminate();
        let _ = self.flush().await;
    }
}
