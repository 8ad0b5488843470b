//! A server-sent-events relay: streams a channel's notifications to browsers.
//!
//! `GET /` serves a page that opens `GET /events` with `EventSource` and
//! lists what arrives; each browser gets its own subscription on one shared
//! listener, so a thousand open tabs still make one PostgreSQL connection.
//! Gaps are forwarded as `gap` events, so a page can reload what it shows.
//!
//! ```sh
//! cargo run -p pgnotify-tokio --example sse_relay [DATABASE_URL]
//! # open http://127.0.0.1:3000/ then, from another shell:
//! psql "$DATABASE_URL" -c "NOTIFY events, 'hello'"
//! ```
//!
//! Without a database URL it starts a throwaway server and publishes a tick
//! every second so the page has something to show. `RELAY_ADDR` sets the
//! address (default `127.0.0.1:3000`), `RELAY_CHANNEL` the channel (default
//! `events`).

mod relay;
#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use pgnotify_tokio::Listener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = support::database();
    let channel = std::env::var("RELAY_CHANNEL").unwrap_or_else(|_| "events".to_owned());
    let addr = std::env::var("RELAY_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());

    let listener = Listener::connect(&database.url).await?;
    let (app, mut opened) = relay::router(listener.clone(), &channel);
    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "relaying channel {channel:?} on http://{}/",
        tcp.local_addr()?
    );

    tokio::spawn(async move {
        while opened.changed().await.is_ok() {
            println!("event streams opened so far: {}", *opened.borrow());
        }
    });
    if database.is_throwaway() {
        tokio::spawn(tick(listener.clone(), channel.clone()));
    }

    axum::serve(tcp, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    listener.close().await;
    Ok(())
}

/// Publishes `tick N` every second.
async fn tick(listener: Listener, channel: String) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    for n in 1.. {
        interval.tick().await;
        if let Err(e) = listener.notify(&channel, &format!("tick {n}")).await {
            eprintln!("tick {n} not sent: {e}");
        }
    }
}
