//! The connection to the server as the driver loop sees it: plain or TLS.

use std::io::{self, Read, Write};
use std::task::{Context, Poll};

use rustls::ClientConnection;

use crate::Transport;
use crate::tls::{TlsConnector, TlsError, tls_server_end_point};

/// A connection to the server, plaintext or (after [`start_tls`]) TLS.
///
/// This is the one read/write abstraction the driver loop uses; it behaves
/// the same either way. Writes are buffered inside TLS, so after writing,
/// call [`poll_flush`](MaybeTlsStream::poll_flush) until it is ready. Reading may
/// also queue TLS records to send (alerts, key updates): the driver flushes
/// whenever [`wants_flush`](MaybeTlsStream::wants_flush) says so.
///
/// [`start_tls`]: MaybeTlsStream::start_tls
pub struct MaybeTlsStream {
    io: Box<dyn Transport>,
    tls: Option<Box<ClientConnection>>,
}

impl std::fmt::Debug for MaybeTlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaybeTlsStream")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl MaybeTlsStream {
    /// Wraps a freshly connected transport; no TLS yet.
    pub fn new(io: Box<dyn Transport>) -> MaybeTlsStream {
        MaybeTlsStream { io, tls: None }
    }

    /// Whether the TLS handshake has completed on this stream.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))] // a test hook
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The underlying operating-system socket.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))] // a test hook
    pub fn socket(&self) -> socket2::SockRef<'_> {
        self.io.socket()
    }

    /// Performs the TLS handshake as a client of `host` and switches the
    /// stream to TLS.
    ///
    /// Call it once the server has answered `S` to SSLRequest, with nothing
    /// left unread after that byte. Returns the `tls-server-end-point`
    /// channel-binding data for SCRAM-SHA-256-PLUS, or `None` when the
    /// server's certificate allows none (see [`tls_server_end_point`]).
    ///
    /// Not cancel safe: if the future is dropped, the stream is in the middle
    /// of a handshake and can only be dropped.
    pub async fn start_tls(
        &mut self,
        connector: &TlsConnector,
        host: &str,
    ) -> Result<Option<Vec<u8>>, TlsError> {
        let mut session = Box::new(connector.session(host)?);
        std::future::poll_fn(|cx| poll_handshake(&mut *self.io, &mut session, cx, host)).await?;
        let binding = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| tls_server_end_point(leaf));
        self.tls = Some(session);
        Ok(binding)
    }

    /// Reads decrypted bytes into `buf`; `Ok(0)` means the server closed the
    /// connection.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.io.poll_read(cx, buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut reader = SyncIo {
                io: &mut *self.io,
                cx,
            };
            match tls.read_tls(&mut reader) {
                // EOF without close_notify: the reader reports it next turn.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(error) = tls.process_new_packets() {
                // Queue the alert for the peer; the caller's next flush sends it.
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
        }
    }

    /// Takes bytes to send; returns how many were taken.
    ///
    /// Plaintext goes straight to the socket; with TLS the bytes are
    /// encrypted into rustls's buffer and sent by
    /// [`poll_flush`](MaybeTlsStream::poll_flush).
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.io.poll_write(cx, buf);
        };
        // Bound rustls's buffer: push what it holds before taking more.
        if tls.wants_write() {
            match poll_write_tls(&mut *self.io, tls, cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map_ok(|()| 0),
            }
        }
        Poll::Ready(tls.writer().write(buf))
    }

    /// Whether encrypted bytes are waiting to be sent.
    pub fn wants_flush(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Sends everything buffered.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.tls.as_deref_mut() {
            Some(tls) => poll_write_tls(&mut *self.io, tls, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Drives the handshake until it completes; errors are sent to the server as
/// an alert (best effort) before they are returned.
fn poll_handshake(
    io: &mut dyn Transport,
    session: &mut ClientConnection,
    cx: &mut Context<'_>,
    host: &str,
) -> Poll<Result<(), TlsError>> {
    loop {
        if session.wants_write() {
            match poll_write_tls(io, session, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(TlsError::Io(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !session.is_handshaking() {
            return Poll::Ready(Ok(()));
        }
        let mut reader = SyncIo { io: &mut *io, cx };
        match session.read_tls(&mut reader) {
            Ok(0) => return Poll::Ready(Err(TlsError::Closed)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(TlsError::Io(e))),
        }
        if let Err(error) = session.process_new_packets() {
            // Tell the server why, if the socket takes it right away.
            let _ = poll_write_tls(io, session, cx);
            return Poll::Ready(Err(TlsError::from_rustls(error, host)));
        }
    }
}

/// Writes rustls's pending records to the socket until none are left.
fn poll_write_tls(
    io: &mut dyn Transport,
    session: &mut ClientConnection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while session.wants_write() {
        let mut writer = SyncIo { io: &mut *io, cx };
        match session.write_tls(&mut writer) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// Presents a polled transport as a blocking `Read`/`Write` for rustls,
/// mapping `Pending` to `WouldBlock` (the waker is registered by then).
struct SyncIo<'a, 'b> {
    io: &'a mut dyn Transport,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io.poll_read(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.io.poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
