//! The fan-out workload: chunks of NotificationResponse frames dispatched to
//! subscribers that each drain their queue in one batch, through pgnotify
//! and through a `tokio::sync::broadcast<String>` multiplexer.

use std::collections::HashMap;

use pgnotify_core::OverflowPolicy;
use pgnotify_core::SubscribeOptions;
use pgnotify_core::bus::{Bus, BusEvent, EventBatch, EventRef, SubscriberId};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

use crate::frames::{self, SENDER_PID};
use crate::sim_bus::{self, SetupError};

/// Frames per input chunk: what one read of the socket hands the parser.
pub const FRAMES_PER_CHUNK: usize = 256;

/// One fan-out shape: how many subscribers, over how many channels, with
/// what payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Subscribers in total.
    pub subscribers: usize,
    /// Channels; subscriber `i` listens on channel `i % channels`.
    pub channels: usize,
    /// Bytes of payload per notification.
    pub payload_len: usize,
}

impl Scenario {
    /// The scenarios of issue 8 item 1: 1, 100 and 10,000 subscribers on one
    /// channel and 10,000 subscribers over 10,000 channels, each with
    /// 16-byte and 1,000-byte payloads.
    pub fn all() -> Vec<Scenario> {
        let shapes = [(1, 1), (100, 1), (10_000, 1), (10_000, 10_000)];
        let mut all = Vec::new();
        for (subscribers, channels) in shapes {
            for payload_len in [16, 1000] {
                all.push(Scenario {
                    subscribers,
                    channels,
                    payload_len,
                });
            }
        }
        all
    }

    /// A short name for reports, e.g. `100sub_1ch_16B`.
    pub fn name(&self) -> String {
        format!(
            "{}sub_{}ch_{}B",
            self.subscribers, self.channels, self.payload_len
        )
    }

    /// The name of channel `i`.
    pub fn channel_name(i: usize) -> String {
        format!("bench_channel_{i:05}")
    }

    /// The channel of each subscriber, in subscriber order.
    pub fn subscriber_channels(&self) -> Vec<String> {
        (0..self.subscribers)
            .map(|i| Self::channel_name(i % self.channels))
            .collect()
    }

    /// The input, as chunks of [`FRAMES_PER_CHUNK`] frames. The k-th frame
    /// overall goes to channel `k % channels`, and there are just enough
    /// chunks for every channel to receive one notification, so cycling
    /// through them reaches every subscriber.
    pub fn chunks(&self) -> Vec<Vec<u8>> {
        let payload = frames::payload(self.payload_len);
        let count = self.channels.div_ceil(FRAMES_PER_CHUNK);
        let names: Vec<String> = (0..self.channels).map(Self::channel_name).collect();
        (0..count)
            .map(|c| {
                let mut chunk = Vec::new();
                for f in 0..FRAMES_PER_CHUNK {
                    let channel = &names[(c * FRAMES_PER_CHUNK + f) % self.channels];
                    frames::push_notification(&mut chunk, SENDER_PID, channel, &payload);
                }
                chunk
            })
            .collect()
    }

    /// Deliveries one chunk makes: every frame reaches every subscriber of
    /// its channel.
    pub fn deliveries_per_chunk(&self) -> usize {
        FRAMES_PER_CHUNK * (self.subscribers / self.channels)
    }
}

/// The subscription every benchmark subscriber uses: room for a whole chunk,
/// so the overflow policy never acts.
pub fn subscribe_options() -> SubscribeOptions {
    SubscribeOptions::new()
        .capacity(FRAMES_PER_CHUNK)
        .policy(OverflowPolicy::DropOldest)
}

/// pgnotify: one [`Bus`], fed each chunk with `handle_input`; every
/// subscriber the bus reports readable then takes its queue in one zero-copy
/// batch with `drain_batch` and reads every notification's payload by
/// reference, as a subscriber task woken by the driver would with
/// `Subscription::recv_batch`.
#[derive(Debug)]
pub struct PgnotifyFanout {
    bus: Bus,
    subscribers: Vec<SubscriberId>,
    now: std::time::Instant,
    batch: EventBatch,
    /// Payload bytes read, so the reads are not optimised away.
    payload_bytes: u64,
}

impl PgnotifyFanout {
    /// A listening bus with the subscribers of `scenario`.
    pub fn new(scenario: &Scenario) -> Result<Self, SetupError> {
        let listening =
            sim_bus::listening_bus(&scenario.subscriber_channels(), &subscribe_options())?;
        Ok(Self {
            bus: listening.bus,
            subscribers: listening.subscribers,
            now: listening.now,
            batch: EventBatch::new(),
            payload_bytes: 0,
        })
    }

    /// Parses and dispatches `chunk`, then lets every readable subscriber
    /// take its batch and read each payload; returns the number of
    /// notifications the subscribers read.
    pub fn run_chunk(&mut self, chunk: &[u8]) -> usize {
        self.bus.handle_input(self.now, chunk);
        let mut delivered = 0;
        while let Some(event) = self.bus.poll_event() {
            if let BusEvent::SubscriberReadable(id) = event {
                self.batch.clear();
                self.bus
                    .drain_batch(self.now, id, &mut self.batch, FRAMES_PER_CHUNK);
                for item in &self.batch {
                    if let EventRef::Notification(n) = item {
                        delivered += 1;
                        self.payload_bytes += n.payload.len() as u64;
                    }
                }
            }
        }
        delivered
    }

    /// Payload bytes the subscribers have read so far.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Notifications discarded or subscriptions closed by overflow so far
    /// (zero when the queues are large enough).
    pub fn dropped(&self) -> u64 {
        let s = self.bus.stats();
        s.dropped_oldest + s.dropped_newest + s.replaced_latest + s.closed_by_overflow
    }

    /// How many subscribers the bus has.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }
}

/// One PostgreSQL channel in the baseline: its broadcast sender and the
/// receivers of its subscribers.
#[derive(Debug)]
struct BaselineChannel {
    sender: broadcast::Sender<String>,
    receivers: Vec<broadcast::Receiver<String>>,
    /// Sent to during the current chunk (its receivers must drain).
    touched: bool,
}

/// The baseline: a hand-written multiplexer that parses each frame into
/// `String`s, looks the channel up in a `HashMap` and sends the payload
/// `String` on that channel's `tokio::sync::broadcast`; each receiver
/// (one per subscriber) then drains with `try_recv`, which clones the
/// `String` for every receiver but the last.
#[derive(Debug)]
pub struct BroadcastFanout {
    index: HashMap<String, usize>,
    channels: Vec<BaselineChannel>,
    touched: Vec<usize>,
    lagged: u64,
    /// Payload bytes read, so the reads are not optimised away.
    payload_bytes: u64,
}

impl BroadcastFanout {
    /// One broadcast channel per PostgreSQL channel of `scenario`, with
    /// capacity for a whole chunk, and one receiver per subscriber.
    pub fn new(scenario: &Scenario) -> Self {
        let mut index = HashMap::new();
        let mut channels = Vec::new();
        for name in scenario.subscriber_channels() {
            let i = *index.entry(name).or_insert_with(|| {
                let (sender, _) = broadcast::channel(FRAMES_PER_CHUNK);
                channels.push(BaselineChannel {
                    sender,
                    receivers: Vec::new(),
                    touched: false,
                });
                channels.len() - 1
            });
            let receiver = channels[i].sender.subscribe();
            channels[i].receivers.push(receiver);
        }
        Self {
            index,
            channels,
            touched: Vec::new(),
            lagged: 0,
            payload_bytes: 0,
        }
    }

    /// Parses and dispatches `chunk`, then lets the receivers of every
    /// channel sent to drain; returns the number of items they took.
    pub fn run_chunk(&mut self, chunk: &[u8]) -> usize {
        let Self {
            index,
            channels,
            touched,
            ..
        } = self;
        frames::parse_owned(chunk, |n| {
            if let Some(&i) = index.get(&n.channel) {
                let channel = &mut channels[i];
                // An error means no receiver, which the setup never has.
                let _ = channel.sender.send(n.payload);
                if !channel.touched {
                    channel.touched = true;
                    touched.push(i);
                }
            }
        });
        let mut delivered = 0;
        for i in self.touched.drain(..) {
            let channel = &mut self.channels[i];
            channel.touched = false;
            for receiver in &mut channel.receivers {
                loop {
                    match receiver.try_recv() {
                        Ok(payload) => {
                            delivered += 1;
                            self.payload_bytes += payload.len() as u64;
                            drop(payload);
                        }
                        Err(TryRecvError::Lagged(n)) => self.lagged += n,
                        Err(_) => break,
                    }
                }
            }
        }
        delivered
    }

    /// Payload bytes the receivers have read so far.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Messages receivers missed because they lagged (zero when the
    /// channels are large enough).
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_every_delivery_arrives(scenario: Scenario) {
        let chunks = scenario.chunks();
        let mut pgnotify = PgnotifyFanout::new(&scenario).expect("bus setup");
        let mut baseline = BroadcastFanout::new(&scenario);
        for chunk in chunks.iter().chain(&chunks) {
            assert_eq!(pgnotify.run_chunk(chunk), scenario.deliveries_per_chunk());
            assert_eq!(baseline.run_chunk(chunk), scenario.deliveries_per_chunk());
        }
        assert_eq!(pgnotify.dropped(), 0);
        assert_eq!(baseline.lagged(), 0);
        assert_eq!(pgnotify.payload_bytes(), baseline.payload_bytes());
    }

    #[test]
    fn one_channel_delivers_every_notification_to_every_subscriber() {
        check_every_delivery_arrives(Scenario {
            subscribers: 100,
            channels: 1,
            payload_len: 16,
        });
    }

    #[test]
    fn spread_channels_deliver_each_notification_to_its_one_subscriber() {
        check_every_delivery_arrives(Scenario {
            subscribers: 1000,
            channels: 1000,
            payload_len: 1000,
        });
    }

    #[test]
    fn chunks_cover_every_channel() {
        let scenario = Scenario {
            subscribers: 10_000,
            channels: 10_000,
            payload_len: 16,
        };
        let mut seen = std::collections::HashSet::new();
        for chunk in scenario.chunks() {
            frames::parse_owned(&chunk, |n| {
                seen.insert(n.channel);
            });
        }
        assert_eq!(seen.len(), 10_000);
    }
}
