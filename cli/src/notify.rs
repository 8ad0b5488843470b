//! `pgnotify notify`: one payload, or one notification per line of stdin,
//! pipelined.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pgnotify_tokio::{Listener, NotifyError};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::args::NotifyArgs;
use crate::connection::{self, Target};
use crate::error::CliError;

/// How many notifications may be in flight at once when reading stdin.
const WINDOW: usize = 256;

type Publish = Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send>>;

/// Sends the payload (given, from `--file` or all of stdin), or every line of stdin.
pub(crate) async fn run(
    mut args: NotifyArgs,
    target: Target,
    connect_timeout: Duration,
) -> Result<(), CliError> {
    pgnotify_core::validate_channel(&args.channel).map_err(|source| CliError::Channel {
        name: args.channel.clone(),
        source,
    })?;
    if let Some(path) = &args.file {
        let payload = std::fs::read_to_string(path).map_err(|source| CliError::Io {
            action: "read the payload file",
            source,
        })?;
        args.payload = Some(payload);
    } else if args.stdin_whole {
        let mut payload = String::new();
        tokio::io::stdin()
            .read_to_string(&mut payload)
            .await
            .map_err(|source| CliError::Io {
                action: "read stdin",
                source,
            })?;
        args.payload = Some(payload);
    }
    if let Some(payload) = args.payload.as_ref().filter(|_| !args.durable) {
        // Checked before connecting, so a bad argument needs no server. (A
        // durable payload's bound is the schema's, known to the server.)
        pgnotify_core::validate_payload(payload)
            .map_err(|e| CliError::Notify(Box::new(NotifyError::Payload(e))))?;
    }
    let listener = connection::connect(target, connect_timeout).await?;
    let result = match args.payload {
        _ if args.durable => {
            crate::durable::notify(&listener, args.schema, &args.channel, args.payload).await
        }
        Some(payload) => listener
            .notify(&args.channel, &payload)
            .await
            .map_err(|e| CliError::Notify(Box::new(e))),
        None => notify_lines(&listener, args.channel).await,
    };
    listener.close().await;
    result
}

/// One notification per line of stdin, in order, with up to [`WINDOW`] in
/// flight; each failure is reported on stderr with its line number.
async fn notify_lines(listener: &Listener, channel: String) -> Result<(), CliError> {
    if std::io::stdin().is_terminal() {
        eprintln!("pgnotify: sending each line typed to {channel:?}; Ctrl-D ends");
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut in_flight: VecDeque<(u64, Publish)> = VecDeque::new();
    let (mut read, mut failed) = (0u64, 0u64);
    let mut eof = false;
    loop {
        tokio::select! {
            biased;
            (line_no, result) = next_result(&mut in_flight), if !in_flight.is_empty() => {
                if let Err(e) = result {
                    failed += 1;
                    eprintln!("pgnotify: line {line_no}: {e}");
                }
            }
            line = lines.next_line(), if !eof && in_flight.len() < WINDOW => {
                let line = line.map_err(|source| CliError::Io { action: "read stdin", source })?;
                let Some(line) = line else {
                    eof = true;
                    continue;
                };
                read += 1;
                in_flight.push_back((read, start_publish(listener, &channel, line)));
            }
            else => break,
        }
    }
    if failed > 0 {
        return Err(CliError::SomeNotifiesFailed {
            failed,
            total: read,
        });
    }
    Ok(())
}

/// Starts one notification: polls it once so it is queued on the bus now,
/// in line order, without waiting for the previous ones' results.
fn start_publish(listener: &Listener, channel: &str, payload: String) -> Publish {
    let listener = listener.clone();
    let channel = channel.to_owned();
    let mut publish: Publish = Box::pin(async move { listener.notify(&channel, &payload).await });
    if let Poll::Ready(result) = publish
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return Box::pin(std::future::ready(result));
    }
    publish
}

/// The oldest notification's result, in line order.
async fn next_result(in_flight: &mut VecDeque<(u64, Publish)>) -> (u64, Result<(), NotifyError>) {
    poll_fn(|cx| {
        let Some((line_no, publish)) = in_flight.front_mut() else {
            return Poll::Pending;
        };
        let line_no = *line_no;
        let result = std::task::ready!(publish.as_mut().poll(cx));
        in_flight.pop_front();
        Poll::Ready((line_no, result))
    })
    .await
}
