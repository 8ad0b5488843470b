//! The `json` feature against a real server: typed payloads in and out.

use pgnotify_driver::{JsonEvent, NotifyJsonError};
use pgnotify_throwaway::server::TestServer;
use pgnotify_tokio::{Gap, Listener};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
}

#[tokio::test]
async fn typed_values_undecodable_payloads_and_gaps_arrive_in_order() {
    let server = TestServer::new().expect("a server");
    let listener = Listener::connect(&server.url()).await.expect("connect");
    let mut orders = listener
        .subscribe("orders")
        .await
        .expect("subscribe")
        .json::<Order>();

    let order = Order {
        id: 7,
        item: "tea \"earl grey\"".into(),
    };
    let own_pid = listener.backend_pid();
    listener
        .notify_json("orders", &order)
        .await
        .expect("notify_json");
    listener
        .notify("orders", "{\"id\": \"seven\"}")
        .await
        .expect("notify");
    listener.bounce();

    match orders.recv().await {
        Some(JsonEvent::Value { value, process_id }) => {
            assert_eq!(value, order);
            assert_eq!(Some(process_id), own_pid, "sent by the listener itself");
        }
        other => panic!("expected the order, got {other:?}"),
    }
    match orders.recv().await {
        Some(JsonEvent::Invalid(e)) => {
            assert_eq!(e.payload(), "{\"id\": \"seven\"}");
            assert!(e.error().is_data(), "{:?}", e.error());
        }
        other => panic!("expected the undecodable payload as an item, got {other:?}"),
    }
    match orders.recv().await {
        Some(JsonEvent::Gap(Gap::Reconnected { generation: 2 })) => {}
        other => panic!("expected the reconnect gap, got {other:?}"),
    }
    listener.close().await;
    assert!(
        orders.recv().await.is_none(),
        "the stream ends with the listener"
    );
}

#[tokio::test]
async fn a_value_too_long_once_serialised_is_refused_with_its_size() {
    let server = TestServer::new().expect("a server");
    let listener = Listener::connect(&server.url()).await.expect("connect");
    // 7,000 characters that each need escaping: 14,002 bytes as JSON.
    let value = "\"".repeat(7000);
    match listener.notify_json("orders", &value).await {
        Err(NotifyJsonError::TooLong { len: 14_002 }) => {}
        other => panic!("expected TooLong {{ len: 14002 }}, got {other:?}"),
    }
    let err = listener.notify_json("orders", &value).await.unwrap_err();
    assert!(err.to_string().contains("14002 bytes"), "{err}");
    listener.close().await;
}
