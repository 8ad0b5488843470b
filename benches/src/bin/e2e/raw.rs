//! The baseline client: tokio-postgres, read through
//! `Connection::poll_message` with no task in between.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Socket};

/// A tokio-postgres connection whose messages the caller reads itself.
pub(crate) type RawConnection = Connection<Socket, NoTlsStream>;

/// Connects without spawning the connection: the caller drives it.
pub(crate) async fn connect(conninfo: &str) -> (Client, RawConnection) {
    tokio_postgres::connect(conninfo, NoTls)
        .await
        .expect("tokio-postgres connects")
}

/// Connects and spawns the connection on the current tokio runtime, for a
/// client that only sends queries.
pub(crate) async fn connect_spawned(conninfo: &str) -> Client {
    let (client, connection) = connect(conninfo).await;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Polls `connection` (discarding what it reads) until `request` completes.
pub(crate) async fn drive<S, T, F>(connection: &mut Connection<S, T>, request: F) -> F::Output
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
    F: Future,
{
    let mut request = pin!(request);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = request.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        while let Poll::Ready(message) = connection.poll_message(cx) {
            match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("baseline connection failed: {e}"),
                None => panic!("baseline connection closed"),
            }
        }
        request.as_mut().poll(cx)
    })
    .await
}

/// Reads notifications from `connection` until `count` arrived or `each`
/// (called with every payload) returns `false`; returns how many arrived.
pub(crate) async fn read_notifications(
    connection: &mut RawConnection,
    count: u64,
    mut each: impl FnMut(&str) -> bool,
) -> u64 {
    let mut got = 0;
    std::future::poll_fn(|cx| {
        while got < count {
            match connection.poll_message(cx) {
                Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => {
                    got += 1;
                    if !each(n.payload()) {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => panic!("baseline connection failed: {e}"),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    })
    .await;
    got
}
