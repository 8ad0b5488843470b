//! The SQL of durable channels: the objects `install` creates, and the
//! statements that publish, read and prune.
//!
//! Everything lives in one schema of the user's choosing (`pgnotify` by
//! default): two tables and four functions.
//!
//! - `messages(channel, position, payload, published_at)`, keyed by
//!   `(channel, position)`: one row per durable message. Until the
//!   publishing transaction commits, `position` is the call's ticket,
//!   negated (unique, and below every position a reader asks for); at
//!   commit it becomes the message's place in its channel, `1, 2, 3, …`
//!   with no hole, in commit order (see [`crate::durable`] for why).
//! - `channels(channel, pruned_through)`: per channel, the last position
//!   pruned (every position up to it is gone).
//! - `tickets`: the sequence of calls' tickets.
//! - `publish(channel, payload)`: records the message in the caller's
//!   transaction and returns its ticket. A deferred constraint trigger,
//!   `commit_message`, gives it its position when the transaction commits
//!   and sends the NOTIFY.
//! - `prune(max_age, keep_last)`: deletes the oldest messages of every
//!   channel; `schema_version()` and `max_payload()` describe the install.

use std::fmt;

use crate::statement::push_literal;

/// The version of the objects [`install_sql`](DurableSchema::install_sql) creates. An install refuses
/// to run over objects of a later version.
pub const SCHEMA_VERSION: u32 = 1;

/// The schema durable channels use unless told otherwise.
pub const DEFAULT_SCHEMA: &str = "pgnotify";

/// The largest durable payload [`install_sql`](DurableSchema::install_sql) accepts by default: 16 MiB.
///
/// PostgreSQL stores up to 1 GB in a `text` value; the bound keeps a reader's
/// memory predictable. A reader must accept messages this large (its frame
/// cap follows [`DurableSchema::max_payload`]).
pub const DEFAULT_MAX_PAYLOAD: usize = 16 << 20;

/// The longest NOTIFY payload PostgreSQL accepts (`pg_notify` refuses 8,000
/// bytes and more). A message whose `position:payload` fits is sent whole;
/// a longer one is sent as its position alone and fetched.
const NOTIFY_LIMIT: usize = 7999;

/// A durable message longer than this is left out of a catch-up page unless
/// it is the page's first row: a page's memory stays about
/// `limit × 8 KiB`, and a large message costs one round trip of its own.
pub const PAGE_INLINE_LIMIT: usize = 8 * 1024;

/// Why a schema name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaNameError {
    /// Empty, longer than 63 bytes, starting with a digit, or holding a
    /// character other than an ASCII letter, digit or `_`.
    Invalid {
        /// The name as given.
        name: String,
    },
}

impl fmt::Display for SchemaNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { name } => write!(
                f,
                "durable schema name {name:?} is not 1 to 63 ASCII letters, digits or `_` \
                 starting with a letter or `_`"
            ),
        }
    }
}

impl std::error::Error for SchemaNameError {}

/// The schema durable channels live in, and the SQL that reaches them.
///
/// The name is restricted to ASCII letters, digits and `_` (it is quoted
/// anyway, so case is kept): it appears inside function bodies, where a
/// conservative alphabet rules out any quoting mistake.
///
/// ```
/// use pgnotify_core::durable::DurableSchema;
/// let schema = DurableSchema::new("pgnotify")?;
/// assert_eq!(
///     schema.publish_sql("jobs", "it's 42"),
///     r#"SELECT "pgnotify".publish(E'jobs', E'it''s 42')"#
/// );
/// assert!(DurableSchema::new("no-dashes").is_err());
/// # Ok::<(), pgnotify_core::durable::SchemaNameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DurableSchema {
    name: String,
    quoted: String,
    max_payload: usize,
}

impl Default for DurableSchema {
    fn default() -> Self {
        Self::new(DEFAULT_SCHEMA).expect("the default schema name is valid")
    }
}

impl DurableSchema {
    /// The schema `name`, with the [`DEFAULT_MAX_PAYLOAD`].
    pub fn new(name: &str) -> Result<Self, SchemaNameError> {
        let valid = !name.is_empty()
            && name.len() <= crate::MAX_CHANNEL_LEN
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(SchemaNameError::Invalid {
                name: name.to_owned(),
            });
        }
        let mut quoted = String::new();
        crate::push_quoted_identifier(&mut quoted, name);
        Ok(Self {
            name: name.to_owned(),
            quoted,
            max_payload: DEFAULT_MAX_PAYLOAD,
        })
    }

    /// The same schema with another bound on a message's payload, in bytes:
    /// what [`install_sql`](DurableSchema::install_sql)(Self::install_sql) makes `publish` enforce, and
    /// what a reader must be ready to receive.
    #[must_use]
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The schema's name, unquoted.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bound on a payload, in bytes.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The advisory lock every durable commit (and `prune`) takes, as the
    /// two keys of `pg_advisory_xact_lock(int, int)`: a fixed class and a
    /// hash of the schema name, so two installs do not serialise each other.
    fn lock_keys(&self) -> (i32, i32) {
        // FNV-1a: stable across versions, which the lock key must be.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in self.name.bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        (0x7067_6e79, i32::from_ne_bytes(hash.to_ne_bytes()))
    }

    /// One script, run as a single simple query, that creates or upgrades
    /// every object in one transaction. Running it again changes nothing
    /// (but the payload bound, which it sets anew). It refuses to run over
    /// objects of a later [`SCHEMA_VERSION`].
    pub fn install_sql(&self) -> String {
        let s = &self.quoted;
        let (class, key) = self.lock_keys();
        let lock = format!("pg_advisory_xact_lock({class}, {key})");
        let mut version_fn = String::new();
        push_literal(&mut version_fn, &format!("{s}.schema_version()"));
        let max = self.max_payload;
        let version = SCHEMA_VERSION;
        let notify_room = NOTIFY_LIMIT - 1; // the ':' between position and payload
        format!(
            r#"BEGIN;
SELECT {lock};
DO $pgnotify_check$
DECLARE installed integer;
BEGIN
  IF to_regprocedure({version_fn}) IS NOT NULL THEN
    EXECUTE 'SELECT {s}.schema_version()' INTO installed;
    IF installed > {version} THEN
      RAISE EXCEPTION USING ERRCODE = '55000',
        MESSAGE = format('pgnotify: schema {s} holds durable channels of version %s; this pgnotify knows version {version} and will not downgrade it', installed);
    END IF;
  END IF;
END
$pgnotify_check$;
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.channels (
  channel text PRIMARY KEY,
  pruned_through bigint NOT NULL DEFAULT 0
);
CREATE SEQUENCE IF NOT EXISTS {s}.tickets;
CREATE TABLE IF NOT EXISTS {s}.messages (
  channel text NOT NULL,
  position bigint NOT NULL,
  payload text NOT NULL,
  published_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (channel, position)
);
CREATE OR REPLACE FUNCTION {s}.schema_version() RETURNS integer
  LANGUAGE sql IMMUTABLE AS 'SELECT {version}';
CREATE OR REPLACE FUNCTION {s}.max_payload() RETURNS bigint
  LANGUAGE sql IMMUTABLE AS 'SELECT {max}::bigint';
CREATE OR REPLACE FUNCTION {s}.publish(channel text, payload text) RETURNS bigint
LANGUAGE plpgsql AS $pgnotify_publish$
DECLARE ticket bigint;
BEGIN
  IF publish.channel IS NULL OR publish.channel = '' OR octet_length(publish.channel) > 63 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'pgnotify: a durable channel name is 1 to 63 bytes';
  END IF;
  IF publish.payload IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgnotify: a durable payload is not NULL';
  END IF;
  IF octet_length(publish.payload) > {max} THEN
    RAISE EXCEPTION USING ERRCODE = '54000',
      MESSAGE = format('pgnotify: a durable payload of %s bytes is over the limit of {max} bytes',
                       octet_length(publish.payload));
  END IF;
  -- Until its transaction commits the row stands at a negative position, its ticket, which no
  -- reader asks for (positions are read above a cursor of 0 or more).
  ticket := nextval('{s}.tickets');
  INSERT INTO {s}.messages (channel, position, payload)
    VALUES (publish.channel, -ticket, publish.payload);
  RETURN ticket;
END
$pgnotify_publish$;
CREATE OR REPLACE FUNCTION {s}.commit_message() RETURNS trigger
LANGUAGE plpgsql AS $pgnotify_commit$
DECLARE pos bigint; note text;
BEGIN
  -- Held until the transaction ends: positions are given out in commit order, each the last
  -- committed one plus one (read after the lock, so every earlier holder's commit is visible).
  PERFORM {lock};
  SELECT max(m.position) INTO pos FROM {s}.messages m
    WHERE m.channel = NEW.channel AND m.position > 0;
  IF pos IS NULL THEN
    -- The channel's first message, or every message pruned: continue after the pruned ones.
    INSERT INTO {s}.channels (channel) VALUES (NEW.channel) ON CONFLICT DO NOTHING;
    SELECT c.pruned_through INTO pos FROM {s}.channels c WHERE c.channel = NEW.channel;
  END IF;
  pos := pos + 1;
  IF current_setting('transaction_isolation') = 'read committed' THEN
    UPDATE {s}.messages SET position = pos, published_at = clock_timestamp()
      WHERE channel = NEW.channel AND position = NEW.position;
  ELSE
    -- An older snapshot cannot see a racing commit's position: say so as what it is.
    BEGIN
      UPDATE {s}.messages SET position = pos, published_at = clock_timestamp()
        WHERE channel = NEW.channel AND position = NEW.position;
    EXCEPTION WHEN unique_violation THEN
      RAISE EXCEPTION USING ERRCODE = '40001',
        MESSAGE = format('pgnotify: a concurrent durable publish on channel %s committed first; retry the transaction', NEW.channel);
    END;
  END IF;
  note := pos::text;
  IF octet_length(NEW.payload) + octet_length(note) <= {notify_room} THEN
    note := note || ':' || NEW.payload;
  END IF;
  PERFORM pg_notify(NEW.channel, note);
  RETURN NULL;
END
$pgnotify_commit$;
DO $pgnotify_trigger$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger
                 WHERE tgname = 'commit_message' AND tgrelid = '{s}.messages'::regclass) THEN
    CREATE CONSTRAINT TRIGGER commit_message AFTER INSERT ON {s}.messages
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {s}.commit_message();
  END IF;
END
$pgnotify_trigger$;
CREATE OR REPLACE FUNCTION {s}.prune(max_age interval DEFAULT NULL, keep_last bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $pgnotify_prune$
DECLARE ch record; last bigint; threshold bigint; young bigint; removed bigint; total bigint := 0;
BEGIN
  IF max_age IS NULL AND keep_last IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgnotify: prune needs max_age, keep_last or both';
  END IF;
  IF keep_last < 0 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgnotify: prune''s keep_last is not negative';
  END IF;
  PERFORM {lock};
  FOR ch IN SELECT c.channel, c.pruned_through FROM {s}.channels c LOOP
    SELECT coalesce(max(m.position), ch.pruned_through) INTO last FROM {s}.messages m
      WHERE m.channel = ch.channel AND m.position > 0;
    threshold := ch.pruned_through;
    IF keep_last IS NOT NULL THEN
      threshold := greatest(threshold, last - keep_last);
    END IF;
    IF max_age IS NOT NULL THEN
      SELECT min(m.position) INTO young FROM {s}.messages m
        WHERE m.channel = ch.channel AND m.position > ch.pruned_through
          AND m.published_at >= clock_timestamp() - max_age;
      threshold := greatest(threshold, coalesce(young - 1, last));
    END IF;
    IF threshold > ch.pruned_through THEN
      DELETE FROM {s}.messages m
        WHERE m.channel = ch.channel AND m.position > ch.pruned_through AND m.position <= threshold;
      GET DIAGNOSTICS removed = ROW_COUNT;
      total := total + removed;
      UPDATE {s}.channels c SET pruned_through = threshold WHERE c.channel = ch.channel;
    END IF;
  END LOOP;
  RETURN total;
END
$pgnotify_prune$;
COMMIT;"#
        )
    }

    /// `SELECT <schema>.publish(channel, payload)`: one durable message,
    /// recorded in the transaction the statement runs in. Returns one row:
    /// the call's ticket, a number no other call gets (the message's
    /// position is given at commit).
    pub fn publish_sql(&self, channel: &str, payload: &str) -> String {
        let mut sql = format!("SELECT {}.publish(", self.quoted);
        push_literal(&mut sql, channel);
        sql.push_str(", ");
        push_literal(&mut sql, payload);
        sql.push(')');
        sql
    }

    /// `SELECT <schema>.publish($1, $2)`: the same call with the channel
    /// and payload as `text` parameters, for the extended protocol (no
    /// escaping; many calls share one transaction and one commit).
    pub fn publish_call_sql(&self) -> String {
        format!("SELECT {}.publish($1, $2)", self.quoted)
    }

    /// One page of `channel`'s messages after position `after`, at most
    /// `limit` of them, in order; read back with [`Page::from_rows`].
    ///
    /// Every row also carries the channel's `last_position` and
    /// `pruned_through` (0 for a channel never published on); with `limit`
    /// 0 (or nothing after `after`) it is one row with no message. A payload longer than [`PAGE_INLINE_LIMIT`] comes
    /// back NULL unless its row is the page's first.
    ///
    /// [`Page::from_rows`]: crate::durable::Page::from_rows
    pub fn page_sql(&self, channel: &str, after: u64, limit: u32) -> String {
        let s = &self.quoted;
        let mut name = String::new();
        push_literal(&mut name, channel);
        format!(
            "SELECT h.last_position, h.pruned_through, m.position, m.size, m.payload \
             FROM (SELECT coalesce((SELECT max(position) FROM {s}.messages \
                                    WHERE channel = {name} AND position > 0), p.pruned) \
                            AS last_position, \
                          p.pruned AS pruned_through \
                   FROM (SELECT coalesce((SELECT pruned_through FROM {s}.channels \
                                          WHERE channel = {name}), 0) AS pruned) p) h \
             LEFT JOIN LATERAL ( \
               SELECT x.position, octet_length(x.payload) AS size, \
                 CASE WHEN x.rn = 1 OR octet_length(x.payload) <= {PAGE_INLINE_LIMIT} \
                      THEN x.payload END AS payload \
               FROM (SELECT position, payload, row_number() OVER (ORDER BY position) AS rn \
                     FROM {s}.messages WHERE channel = {name} AND position > {after} \
                     ORDER BY position LIMIT {limit}) x \
             ) m ON true ORDER BY m.position"
        )
    }

    /// `SELECT <schema>.prune(max_age, keep_last)`: the number of messages
    /// deleted. `max_age` is a PostgreSQL interval (`'7 days'`).
    pub fn prune_sql(&self, max_age: Option<&str>, keep_last: Option<u64>) -> String {
        let mut sql = format!("SELECT {}.prune(", self.quoted);
        match max_age {
            Some(age) => {
                push_literal(&mut sql, age);
                sql.push_str("::interval");
            }
            None => sql.push_str("NULL"),
        }
        sql.push_str(", ");
        match keep_last {
            Some(n) => sql.push_str(&n.to_string()),
            None => sql.push_str("NULL"),
        }
        sql.push(')');
        sql
    }

    /// `SELECT <schema>.schema_version(), <schema>.max_payload()`: whether
    /// the schema is installed, and how.
    pub fn version_sql(&self) -> String {
        let s = &self.quoted;
        format!("SELECT {s}.schema_version(), {s}.max_payload()")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_conservative() {
        for good in ["pgnotify", "_x", "App_Outbox2"] {
            assert!(DurableSchema::new(good).is_ok(), "{good}");
        }
        for bad in ["", "2x", "a-b", "a b", "a\"b", "a$b", &"x".repeat(64)] {
            assert!(DurableSchema::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_lock_key_is_stable_and_per_schema() {
        let a = DurableSchema::new("pgnotify").unwrap().lock_keys();
        assert_eq!(a, DurableSchema::new("pgnotify").unwrap().lock_keys());
        assert_ne!(a, DurableSchema::new("other").unwrap().lock_keys());
    }

    #[test]
    fn statements_quote_what_they_embed() {
        let s = DurableSchema::new("Out").unwrap();
        assert_eq!(
            s.prune_sql(Some("7 days"), Some(10)),
            r#"SELECT "Out".prune(E'7 days'::interval, 10)"#
        );
        assert_eq!(s.prune_sql(None, None), r#"SELECT "Out".prune(NULL, NULL)"#);
        assert!(
            s.page_sql(r"a'\b", 5, 100)
                .contains(r"WHERE channel = E'a''\\b'")
        );
        assert!(
            s.install_sql()
                .contains(r#"CREATE SCHEMA IF NOT EXISTS "Out";"#)
        );
    }
}
