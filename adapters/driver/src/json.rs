//! Typed payloads: JSON in and out of notifications, through serde.
//!
//! [`Subscription::json`] turns a subscription into a [`JsonSubscription`],
//! whose items are decoded values, undecodable payloads (with the error and
//! the raw text) and the same gaps the subscription carries; nothing is
//! skipped. [`Listener::notify_json`] serialises a value and sends it,
//! checking PostgreSQL's payload limit against the serialised size.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use pgnotify_core::bus::NotifyError;
use pgnotify_core::{EndReason, Event, Gap, MAX_PAYLOAD_LEN, Notification};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::listener::Listener;
use crate::subscription::Subscription;

/// One item of a [`JsonSubscription`]: a decoded value, a payload that did
/// not decode, or a gap.
#[derive(Debug)]
#[non_exhaustive]
pub enum JsonEvent<T> {
    /// A notification whose payload decoded as `T`.
    Value {
        /// The decoded payload.
        value: T,
        /// The backend process id of the session that sent it.
        process_id: i32,
    },
    /// A notification whose payload is not a valid `T`. It is an item of the
    /// stream, in its place, so a consumer can log it, dead-letter it, or
    /// resynchronise.
    Invalid(DecodeError),
    /// Notifications may be missing here, exactly as in the underlying
    /// [`Subscription`]; see [`Gap`].
    Gap(Gap),
}

impl<T> JsonEvent<T> {
    /// The decoded value, if this item is one.
    pub fn value(&self) -> Option<&T> {
        match self {
            Self::Value { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The decoded value, if this item is one, by value.
    pub fn into_value(self) -> Option<T> {
        match self {
            Self::Value { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// A notification payload that did not decode as the requested type.
#[derive(Debug)]
pub struct DecodeError {
    notification: Notification,
    error: serde_json::Error,
}

impl DecodeError {
    /// The payload exactly as received.
    pub fn payload(&self) -> &str {
        &self.notification.payload
    }

    /// The whole notification (channel, payload, sender's process id).
    pub fn notification(&self) -> &Notification {
        &self.notification
    }

    /// What serde_json reported, with the line and column where decoding stopped.
    pub fn error(&self) -> &serde_json::Error {
        &self.error
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the payload of a notification on {:?} is not valid JSON of the expected type: {}",
            self.notification.channel.as_str(),
            self.error
        )
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Decodes one subscription item; the single place where payloads become values.
fn decode<T: DeserializeOwned>(event: Event) -> Option<JsonEvent<T>> {
    match event {
        Event::Notification(notification) => {
            Some(match serde_json::from_str(&notification.payload) {
                Ok(value) => JsonEvent::Value {
                    value,
                    process_id: notification.process_id,
                },
                Err(error) => JsonEvent::Invalid(DecodeError {
                    notification,
                    error,
                }),
            })
        }
        Event::Gap(gap) => Some(JsonEvent::Gap(gap)),
        // Kinds of item added to the core later carry no payload to decode;
        // they are not notifications, so dropping them loses none.
        _ => None,
    }
}

/// A [`Subscription`] whose notification payloads are decoded from JSON as `T`.
///
/// Made by [`Subscription::json`]. Its items are [`JsonEvent`]s, one per item
/// of the subscription, in the same order: decoded values, payloads that did
/// not decode (never skipped silently), and gaps. It ends when the
/// subscription ends. Read it with [`recv`](Self::recv) or as a
/// [`futures_core::Stream`]; dropping it unsubscribes.
///
/// ```no_run
/// # async fn example(listener: pgnotify_driver::Listener) -> Result<(), Box<dyn std::error::Error>> {
/// #[derive(serde::Deserialize)]
/// struct Job {
///     id: u64,
/// }
///
/// let mut jobs = listener.subscribe("jobs").await?.json::<Job>();
/// while let Some(item) = jobs.recv().await {
///     match item {
///         pgnotify_driver::JsonEvent::Value { value, .. } => println!("job {}", value.id),
///         pgnotify_driver::JsonEvent::Invalid(e) => eprintln!("{e}: {:?}", e.payload()),
///         pgnotify_driver::JsonEvent::Gap(gap) => println!("{gap}: rescan the jobs table"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct JsonSubscription<T> {
    inner: Subscription,
    _type: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for JsonSubscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSubscription")
            .field("inner", &self.inner)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl Subscription {
    /// Decodes this subscription's payloads from JSON as `T`.
    ///
    /// See [`JsonSubscription`]. Items already buffered in the subscription
    /// are decoded too; nothing is lost by switching.
    pub fn json<T: DeserializeOwned>(self) -> JsonSubscription<T> {
        JsonSubscription {
            inner: self,
            _type: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> JsonSubscription<T> {
    /// Waits for the next item; `None` when the stream has ended.
    ///
    /// Cancel safe, as [`Subscription::recv`].
    pub async fn recv(&mut self) -> Option<JsonEvent<T>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item, registering the task to be woken when one
    /// arrives.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<JsonEvent<T>>> {
        loop {
            match self.inner.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    if let Some(item) = decode(event) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T> JsonSubscription<T> {
    /// The channel this subscription listens on.
    pub fn channel(&self) -> &str {
        self.inner.channel()
    }

    /// Why the stream ended, once [`recv`](Self::recv) has returned `None`.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.inner.end_reason()
    }

    /// The undecoded subscription back.
    pub fn into_inner(self) -> Subscription {
        self.inner
    }
}

impl<T: DeserializeOwned> futures_core::Stream for JsonSubscription<T> {
    type Item = JsonEvent<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<JsonEvent<T>>> {
        self.get_mut().poll_recv(cx)
    }
}

/// Why [`Listener::notify_json`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotifyJsonError {
    /// The value could not be serialised (for example a map with non-string
    /// keys, or a `Serialize` implementation that failed); nothing was sent.
    Serialize(serde_json::Error),
    /// The serialised value is too long for a notification; nothing was sent.
    TooLong {
        /// The serialised length in bytes.
        len: usize,
    },
    /// Sending failed, as [`Listener::notify`] reports it.
    Notify(NotifyError),
}

impl fmt::Display for NotifyJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Serialize(e) => write!(f, "the value could not be serialised as JSON: {e}"),
            Self::TooLong { len } => write!(
                f,
                "the value is {len} bytes once serialised as JSON; a notification payload may \
                 be at most {MAX_PAYLOAD_LEN} bytes"
            ),
            Self::Notify(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NotifyJsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Serialize(e) => Some(e),
            Self::TooLong { .. } => None,
            Self::Notify(e) => Some(e),
        }
    }
}

impl From<NotifyError> for NotifyJsonError {
    fn from(e: NotifyError) -> Self {
        Self::Notify(e)
    }
}

/// Serialises `value` as a notification payload, checking the server's limit.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, NotifyJsonError> {
    let payload = serde_json::to_string(value).map_err(NotifyJsonError::Serialize)?;
    // serde_json escapes NUL inside strings (`\u0000`), so the length is the
    // only limit a serialised value can break.
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(NotifyJsonError::TooLong { len: payload.len() });
    }
    Ok(payload)
}

impl<R> Listener<R> {
    /// Serialises `value` as JSON and sends it as the payload of
    /// `NOTIFY channel`, as [`notify`](Self::notify) does.
    ///
    /// The payload limit (at most 7999 bytes) applies to the serialised text;
    /// a longer value fails with [`NotifyJsonError::TooLong`] before anything
    /// is sent.
    ///
    /// ```no_run
    /// # async fn example(listener: pgnotify_driver::Listener) -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Serialize)]
    /// struct Job {
    ///     id: u64,
    /// }
    ///
    /// listener.notify_json("jobs", &Job { id: 42 }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn notify_json<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        value: &T,
    ) -> Result<(), NotifyJsonError> {
        let payload = encode(value)?;
        Ok(self.notify(channel, &payload).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgnotify_core::SharedStr;

    fn notification(payload: &str) -> Event {
        Event::Notification(Notification {
            channel: SharedStr::from("jobs"),
            payload: SharedStr::from(payload),
            process_id: 7,
        })
    }

    #[test]
    fn valid_payload_decodes_with_its_sender() {
        match decode::<Vec<u32>>(notification("[1,2]")) {
            Some(JsonEvent::Value { value, process_id }) => {
                assert_eq!((value, process_id), (vec![1, 2], 7));
            }
            other => panic!("expected a value, got {other:?}"),
        }
    }

    #[test]
    fn invalid_payload_is_an_item_with_the_raw_text_and_the_error() {
        match decode::<Vec<u32>>(notification("not json")) {
            Some(JsonEvent::Invalid(e)) => {
                assert_eq!(e.payload(), "not json");
                assert_eq!(e.notification().process_id, 7);
                assert!(e.error().is_syntax(), "{:?}", e.error());
                assert!(e.to_string().contains("\"jobs\""), "{e}");
            }
            other => panic!("expected an invalid item, got {other:?}"),
        }
    }

    #[test]
    fn payload_of_the_wrong_shape_is_invalid_not_skipped() {
        let item = decode::<Vec<u32>>(notification("{\"id\":1}"));
        assert!(
            matches!(&item, Some(JsonEvent::Invalid(e)) if e.error().is_data()),
            "{item:?}"
        );
    }

    #[test]
    fn gaps_pass_through_unchanged() {
        let item = decode::<u32>(Event::Gap(Gap::Overflow { missed: 3 }));
        assert!(
            matches!(item, Some(JsonEvent::Gap(Gap::Overflow { missed: 3 }))),
            "{item:?}"
        );
    }

    #[test]
    fn value_at_the_limit_encodes_and_one_byte_more_is_too_long_naming_its_size() {
        // A JSON string adds two quotes.
        let fits = "x".repeat(MAX_PAYLOAD_LEN - 2);
        assert_eq!(encode(&fits).map(|p| p.len()).ok(), Some(MAX_PAYLOAD_LEN));
        let too_long = "x".repeat(MAX_PAYLOAD_LEN - 1);
        let err = encode(&too_long).unwrap_err();
        assert!(
            matches!(err, NotifyJsonError::TooLong { len: 8000 }),
            "{err:?}"
        );
        assert!(err.to_string().contains("8000 bytes"), "{err}");
    }

    #[test]
    fn escaping_counts_towards_the_limit() {
        // Each NUL becomes the six bytes `\u0000` once serialised.
        let value = "\0".repeat(1400);
        let err = encode(&value).unwrap_err();
        assert!(
            matches!(err, NotifyJsonError::TooLong { len: 8402 }),
            "{err:?}"
        );
    }

    #[test]
    fn unserialisable_value_is_a_serialise_error() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1u8);
        let err = encode(&map).unwrap_err();
        assert!(matches!(err, NotifyJsonError::Serialize(_)), "{err:?}");
    }
}
