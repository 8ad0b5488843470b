//! A job-queue worker woken by notifications, with `KeepLatest`.
//!
//! A worker does not need one notification per job: it needs to know that
//! there *may be* work, and then it claims jobs from the table until none is
//! left. `OverflowPolicy::KeepLatest` with capacity 1 is exactly that: a
//! burst of 500 notifications while the worker is busy becomes one pending
//! wake-up (the 499 replaced ones are counted, not queued), so memory stays
//! at one item however fast producers go.
//!
//! A gap (an outage, or the replaced wake-ups) means the same thing to this
//! worker as a notification: look at the table. Nothing is lost, because the
//! table, not the notification, is the source of truth.
//!
//! The "table" here is an in-memory queue so that the example needs nothing
//! but PostgreSQL; in an application `claim` would run
//! `DELETE FROM jobs WHERE id = (SELECT id FROM jobs ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING *`.
//!
//! ```sh
//! cargo run -p pgnotify-tokio --example job_queue [DATABASE_URL]
//! ```

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgnotify_tokio::{Event, Listener, OverflowPolicy, SubscribeOptions};

/// Stands in for the jobs table.
type Jobs = Arc<Mutex<VecDeque<u64>>>;

const JOBS: u64 = 500;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = support::database();
    let listener = Listener::connect(&database.url).await?;
    let jobs = Jobs::default();

    // One pending wake-up at most: newer notifications replace older ones.
    let options = SubscribeOptions::new()
        .policy(OverflowPolicy::KeepLatest)
        .capacity(1);
    let wakeups = listener.subscribe_with("jobs", options).await?;
    let worker = tokio::spawn(work(wakeups, jobs.clone()));

    // A producer: insert a job, then NOTIFY (in an application, both in one
    // transaction, so the worker never wakes before the job is visible).
    for id in 1..=JOBS {
        jobs.lock().unwrap().push_back(id);
        listener.notify("jobs", &id.to_string()).await?;
    }
    let (done, wakeups) = worker.await?;
    println!(
        "processed {done} jobs, woken {wakeups} time(s) by {JOBS} notifications; \
         {} notifications were replaced instead of queued",
        listener.stats().replaced_latest
    );
    listener.close().await;
    Ok(())
}

/// Drains the queue on every wake-up until every job is done; returns how
/// many jobs it did and how many times it woke.
async fn work(mut wakeups: pgnotify_tokio::Subscription, jobs: Jobs) -> (u64, u64) {
    let (mut done, mut woken) = (0, 0);
    while done < JOBS {
        match wakeups.recv().await {
            // A notification or a gap: either way, look at the table.
            Some(Event::Notification(_) | Event::Gap(_)) => woken += 1,
            Some(_) => continue,
            None => break,
        }
        while let Some(job) = claim(&jobs) {
            // Doing the job takes a while, so notifications pile up meanwhile.
            tokio::time::sleep(Duration::from_micros(200)).await;
            done += 1;
            if job % 100 == 0 {
                println!("job {job} done");
            }
        }
    }
    (done, woken)
}

/// Takes the oldest job off the queue, if any.
fn claim(jobs: &Jobs) -> Option<u64> {
    jobs.lock().unwrap().pop_front()
}
