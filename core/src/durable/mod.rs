//! Durable channels: a reconnect or an overflow costs latency, never data;
//! and payloads beyond NOTIFY's 8,000 bytes.
//!
//! A durable message is a row in a table (the transactional outbox) that a
//! NOTIFY announces. A durable subscriber follows the live notifications
//! and, wherever the live stream may have missed something (a reconnect,
//! an overflow, a position it did not expect), reads the table from its
//! cursor. It receives every message after its cursor exactly once, in
//! order, with no gap items; a message too long for a NOTIFY is announced by
//! its position and read from the table.
//!
//! This module is the sans-IO part: the SQL ([`DurableSchema`]), the parsing
//! of what the server sends ([`LiveNote`], [`Page`]) and the merge
//! ([`DurableReader`]). The driver's `Durable` runs them on connections.
//!
//! # Positions, and why a subscriber never skips a late commit
//!
//! A message's position is given when its transaction commits, not when it
//! is inserted: `publish()` inserts the row at a placeholder (its ticket,
//! negated), and a deferred constraint trigger, run during commit, takes a
//! transaction advisory lock (one per schema), reads the channel's last
//! committed position and moves the row to the next one, then sends the
//! NOTIFY. The lock is held until the transaction has ended, so:
//!
//! 1. **Commit order.** A transaction that takes the lock after another
//!    has released it sees that one as committed, and gets a larger
//!    position. Positions on a channel follow commit order: a transaction
//!    that commits late gets a *later* position, never an earlier one a
//!    subscriber may already have passed (the flaw of positions given at
//!    insert, which the simulation shows by running both schemes).
//! 2. **No hole.** The next position is the last *committed* one plus one,
//!    read under the lock, and a transaction that rolls back (or fails at
//!    commit) takes its row with it. Committed positions are `1, 2, 3, …`;
//!    a subscriber can tell a missing message from a message that never
//!    was.
//! 3. **NOTIFY order = position order.** Each transaction queues its
//!    NOTIFY during its commit, while it holds the lock, so the server's
//!    queue receives them in position order, and a listener receives them
//!    in that order.
//! 4. **Snapshot + LISTEN cover everything.** A page is read by one
//!    statement, so from one snapshot, after the subscriber's LISTEN was
//!    acknowledged: every message committed before the snapshot is in it,
//!    every message committed after the LISTEN reaches the live stream.
//!    Together they leave no hole; the cursor drops the overlap.
//!
//! The cost is that durable commits of one schema are serialised from the
//! trigger to the end of the commit. PostgreSQL already serialises the
//! commits of every transaction that sent a NOTIFY (a lock taken in
//! `PreCommit_Notify`), so this adds the trigger's index probe and row
//! update to a section that exists anyway. A publishing transaction at `REPEATABLE
//! READ` or `SERIALIZABLE` reads the last position from its own, older
//! snapshot: if another commit on the same channel raced it, it fails with
//! a serialization error (SQLSTATE 40001) and is retried by the
//! application, as for any such conflict: nothing is lost or reordered.

mod page;
mod reader;
mod schema;

pub use page::{BadPage, ForeignNote, LiveNote, Page, PageRow};
pub use reader::{
    DEFAULT_PAGE_LIMIT, DurableEvent, DurableMessage, DurableReader, PageRequest, ReaderError,
    ReaderStats, Since,
};
pub use schema::{
    DEFAULT_MAX_PAYLOAD, DEFAULT_SCHEMA, DurableSchema, PAGE_INLINE_LIMIT, SCHEMA_VERSION,
    SchemaNameError,
};
