//! A cache kept correct by notifications, resynchronised on every gap.
//!
//! The cache holds product prices read from the database. Whoever changes a
//! price sends `NOTIFY product_changed, '<id>'`, and the cache forgets that
//! entry. When the subscription shows a gap, some notifications may be
//! missing, so the cache cannot know which entries are stale: it drops them
//! all and reloads. That is the whole contract pgnotify gives a consumer:
//! everything is either delivered or stands behind a gap, so this cache is
//! never silently stale.
//!
//! The run shows both kinds of gap: a burst larger than the subscription's
//! queue while the cache is slow (`Gap::Overflow`, with the exact count), and
//! a reconnect (`Gap::Reconnected`, forced with `Listener::bounce`), during
//! which a change goes unannounced and the resync still picks it up.
//!
//! The "database" is an in-memory map so that the example needs nothing but
//! PostgreSQL to listen on; in an application `load` and `load_all` would
//! be queries.
//!
//! ```sh
//! cargo run -p pgnotify-tokio --example cache_invalidation [DATABASE_URL]
//! ```

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgnotify_tokio::{Event, Listener, OverflowPolicy, SubscribeOptions, Subscription};

/// Stands in for the products table: id → price in cents.
type Database = Arc<Mutex<HashMap<u32, u64>>>;

const CHANNEL: &str = "product_changed";

/// A read-through cache of product prices.
struct PriceCache {
    database: Database,
    entries: HashMap<u32, u64>,
    resyncs: u32,
}

impl PriceCache {
    fn new(database: Database) -> Self {
        let mut cache = Self {
            database,
            entries: HashMap::new(),
            resyncs: 0,
        };
        cache.load_all();
        cache
    }

    /// The price of `id`, from the cache or else the database.
    fn get(&mut self, id: u32) -> Option<u64> {
        if let Some(price) = self.entries.get(&id) {
            return Some(*price);
        }
        let price = self.database.lock().unwrap().get(&id).copied()?;
        self.entries.insert(id, price);
        Some(price)
    }

    /// Applies one item of the subscription.
    fn apply(&mut self, event: Event) {
        match event {
            Event::Notification(n) => match n.payload.parse::<u32>() {
                Ok(id) => {
                    self.entries.remove(&id);
                    println!("  product {id} changed: entry dropped");
                }
                // A payload this consumer does not understand could mean
                // anything: treat it like a gap.
                Err(_) => self.resync(&format!("unexpected payload {:?}", n.payload.as_str())),
            },
            // Overflow or reconnect (or a kind of gap added later): which
            // entries are stale is unknown, so all of them are.
            Event::Gap(gap) => self.resync(&gap.to_string()),
            _ => {}
        }
    }

    /// Forgets everything and reloads from the database.
    fn resync(&mut self, why: &str) {
        self.resyncs += 1;
        self.load_all();
        println!(
            "  gap ({why}): cache reloaded, {} entries",
            self.entries.len()
        );
    }

    fn load_all(&mut self) {
        self.entries = self.database.lock().unwrap().clone();
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = support::database();
    let listener = Listener::connect(&db.url).await?;
    let database: Database = Arc::new(Mutex::new((1..=100).map(|id| (id, 1000)).collect()));

    // A small queue, so that a burst overflows it while the cache is slow.
    let options = SubscribeOptions::new()
        .policy(OverflowPolicy::DropOldest)
        .capacity(8);
    let changes = listener.subscribe_with(CHANNEL, options).await?;
    let consumer = tokio::spawn(consume(changes, PriceCache::new(database.clone())));

    println!("one price changes:");
    set_price(&listener, &database, 7, 1250).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!("a burst of 30 changes while the cache is slow:");
    for id in 1..=30 {
        set_price(&listener, &database, id, 900).await?;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    println!("the connection drops (bounce) while a price changes:");
    listener.bounce();
    database.lock().unwrap().insert(42, 4242);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Closing ends the subscription, which ends the consumer.
    listener.close().await;
    let mut cache = consumer.await?;
    let (seven, forty_two) = (cache.get(7), cache.get(42));
    println!(
        "done after {} resyncs; product 7 costs {seven:?}, product 42 costs {forty_two:?} \
         (both fresh)",
        cache.resyncs
    );
    Ok(())
}

/// Updates the "database", then notifies (in an application: in one transaction).
async fn set_price(
    listener: &Listener,
    database: &Database,
    id: u32,
    price: u64,
) -> Result<(), pgnotify_tokio::NotifyError> {
    database.lock().unwrap().insert(id, price);
    listener.notify(CHANNEL, &id.to_string()).await
}

/// Applies every item to the cache until the subscription ends.
async fn consume(mut changes: Subscription, mut cache: PriceCache) -> PriceCache {
    while let Some(event) = changes.recv().await {
        cache.apply(event);
        // Reloading an entry takes a while.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("subscription ended: {:?}", changes.end_reason());
    cache
}
