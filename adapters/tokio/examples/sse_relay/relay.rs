//! The relay's HTTP side: one page and one event stream per browser.
//!
//! Shared with the browser test (`tests/sse_browser.rs`), which serves this
//! router and opens the page in headless Chromium.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use pgnotify_tokio::{Event, Listener};
use tokio::sync::watch;

/// The page: it opens `/events` and appends every item it receives.
/// Payloads are inserted as text, never as HTML.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>pgnotify relay</title></head>
<body>
<h1>pgnotify relay</h1>
<p id="status">connecting…</p>
<ul id="events"></ul>
<script>
const list = document.getElementById("events");
const status = document.getElementById("status");
function add(kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  list.appendChild(item);
}
const source = new EventSource("/events");
source.addEventListener("listening", (e) => { status.textContent = "listening on " + e.data; });
source.addEventListener("notification", (e) => {
  const n = JSON.parse(e.data);
  add("notification", n.payload);
});
source.addEventListener("gap", (e) => add("gap", "gap: " + e.data + " (reload what you show)"));
source.onerror = () => { status.textContent = "relay unreachable; retrying…"; };
</script>
</body>
</html>
"#;

/// What the handlers share.
#[derive(Clone)]
struct Relay {
    listener: Listener,
    channel: Arc<str>,
    /// How many event streams have been opened so far.
    opened: Arc<watch::Sender<u64>>,
}

/// The relay's routes: `GET /` (the page) and `GET /events` (the stream of
/// `channel`), and a receiver of how many streams have been opened so far.
///
/// Every browser gets its own subscription on the one shared listener: one
/// PostgreSQL connection however many browsers watch.
pub(crate) fn router(listener: Listener, channel: &str) -> (Router, watch::Receiver<u64>) {
    let (opened, streams) = watch::channel(0);
    let relay = Relay {
        listener,
        channel: channel.into(),
        opened: Arc::new(opened),
    };
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .with_state(relay);
    (router, streams)
}

/// Subscribes for this browser, then streams: `listening` once, then a
/// `notification` per notification and a `gap` per gap.
async fn events(State(relay): State<Relay>) -> Response {
    // Returns once the server has acknowledged LISTEN: from here on, every
    // notification reaches this browser or shows up as a gap.
    let subscription = match relay.listener.subscribe(&relay.channel).await {
        Ok(subscription) => subscription,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    relay.opened.send_modify(|n| *n += 1);
    let hello = SseEvent::default().event("listening").data(&*relay.channel);
    let items = subscription.filter_map(|event| async move {
        match event {
            Event::Notification(n) => {
                let data = serde_json::json!({
                    "payload": n.payload.as_str(),
                    "process_id": n.process_id,
                });
                Some(
                    SseEvent::default()
                        .event("notification")
                        .data(data.to_string()),
                )
            }
            Event::Gap(gap) => Some(SseEvent::default().event("gap").data(gap.to_string())),
            _ => None,
        }
    });
    let stream = futures_util::stream::once(async { hello })
        .chain(items)
        .map(Ok::<_, Infallible>);
    // Dropping the response (the browser went away) drops the subscription,
    // which unsubscribes.
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
