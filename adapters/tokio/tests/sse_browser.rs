//! End to end through a real browser: the server-sent-events relay example
//! serves its page to headless Chromium, and a NOTIFY shows up in the page.

#[path = "../examples/sse_relay/relay.rs"]
mod relay;

mod browser;

use std::time::Duration;

use pgnotify_throwaway::server::TestServer;
use pgnotify_tokio::Listener;
use serde_json::Value;

use browser::{Browser, chromium_or_skip};

/// Generous: a cold Chromium start on a loaded CI machine takes seconds.
const PATIENCE: Duration = Duration::from_secs(60);

const CHANNEL: &str = "browser test";

/// The notification items the page shows, as text.
const NOTIFICATIONS: &str =
    "[...document.querySelectorAll('#events li.notification')].map(li => li.textContent)";
const GAPS: &str = "[...document.querySelectorAll('#events li.gap')].map(li => li.textContent)";

fn contains(list: &Value, text: &str) -> bool {
    list.as_array()
        .is_some_and(|items| items.iter().any(|item| item.as_str() == Some(text)))
}

#[test]
fn a_notification_appears_in_the_relay_page_and_a_reconnect_shows_as_a_gap() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let server = TestServer::new().expect("a server");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let _context = runtime.enter();

    let listener = runtime
        .block_on(Listener::connect(&server.url()))
        .expect("connect");
    let (app, mut opened) = relay::router(listener.clone(), CHANNEL);
    let tcp = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a port");
    let url = format!("http://{}/", tcp.local_addr().expect("an address"));
    runtime.spawn(async move { axum::serve(tcp, app).await });

    let mut page = Browser::open(&chromium, &url);

    // The relay counts a stream once its subscription is listening: from
    // then on a NOTIFY must reach the page.
    runtime
        .block_on(tokio::time::timeout(PATIENCE, opened.wait_for(|n| *n >= 1)))
        .expect("the page opened /events in time")
        .expect("the relay is running");
    page.wait_for(
        "the page's 'listening' event",
        PATIENCE,
        "document.getElementById('status').textContent",
        |status| status.as_str() == Some("listening on browser test"),
    );

    // Markup in a payload must arrive as text, not as HTML.
    let payload = "hello, <b>browser</b> & \"quotes\" ✓";
    runtime
        .block_on(listener.notify(CHANNEL, payload))
        .expect("notify");
    page.wait_for(
        "the notification in the page",
        PATIENCE,
        NOTIFICATIONS,
        |items| contains(items, payload),
    );
    assert_eq!(
        page.evaluate("document.querySelectorAll('#events b').length"),
        Value::from(0),
        "the payload's markup was parsed as HTML"
    );

    // A reconnect reaches the browser as a gap, and notifications after it
    // still arrive.
    listener.bounce();
    page.wait_for("the reconnect gap in the page", PATIENCE, GAPS, |items| {
        items.as_array().is_some_and(|items| {
            items
                .iter()
                .any(|i| i.as_str().is_some_and(|t| t.contains("reconnected")))
        })
    });
    runtime
        .block_on(listener.notify(CHANNEL, "after the gap"))
        .expect("notify after the reconnect");
    page.wait_for(
        "the notification after the gap",
        PATIENCE,
        NOTIFICATIONS,
        |items| contains(items, "after the gap"),
    );

    drop(page);
    runtime.block_on(listener.close());
}
