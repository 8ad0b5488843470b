//! Ground truth gathered from the simulated servers: every committed
//! notification with a global index, and which bus connection it was
//! written to.

use std::collections::HashMap;

use crate::sim_server::{ConnId, SimServer};

use super::check::Violation;

/// One bus connection: the host it went to and its id there.
pub type LinkId = (usize, ConnId);

/// One committed notification, across all hosts.
#[derive(Debug)]
pub(crate) struct Note {
    pub(crate) host: usize,
    pub(crate) seq: u64,
    pub(crate) channel: String,
    pub(crate) sender_pid: i32,
    /// The bus connection whose byte stream it was written into.
    pub(crate) written: Option<LinkId>,
}

/// Every notification committed on any host, in the order the simulation
/// saw the commits (which is commit order: commits happen one at a time).
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) all: Vec<Note>,
    /// Per host, how many of its sent-log entries are synced.
    synced: Vec<usize>,
    /// Per host, global index by sequence number.
    by_seq: Vec<Vec<usize>>,
    /// Application notifications by (channel, payload); payloads are unique.
    by_key: HashMap<(String, String), usize>,
    /// Global indices written to a bus connection on a channel, ascending.
    written: HashMap<(LinkId, String), Vec<usize>>,
    /// Global indices written to a bus connection, in stream order.
    stream: HashMap<LinkId, Vec<usize>>,
}

impl Notes {
    pub(crate) fn new(hosts: usize) -> Self {
        Self {
            synced: vec![0; hosts],
            by_seq: vec![Vec::new(); hosts],
            ..Self::default()
        }
    }

    /// The number of notifications committed so far: the next global index.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Takes in what the servers committed and wrote since the last sync.
    pub(crate) fn sync(
        &mut self,
        servers: &[SimServer],
        link: Option<(LinkId, &mut usize)>,
    ) -> Result<(), Violation> {
        for (host, server) in servers.iter().enumerate() {
            let log = server.sent_log();
            for sent in &log[self.synced[host]..] {
                let gi = self.all.len();
                if !sent.channel.starts_with("pgnotify.ping.") {
                    let key = (sent.channel.clone(), sent.payload.clone());
                    if self.by_key.insert(key, gi).is_some() {
                        return Err(Violation::new(
                            10,
                            format!(
                                "expected each payload committed at most once (publishes are never \
                                 retried silently), got {:?} on {:?} committed a second time",
                                sent.payload, sent.channel
                            ),
                        ));
                    }
                }
                self.by_seq[host].push(gi);
                self.all.push(Note {
                    host,
                    seq: sent.seq,
                    channel: sent.channel.clone(),
                    sender_pid: sent.sender_pid,
                    written: None,
                });
            }
            self.synced[host] = log.len();
        }
        if let Some((link, synced)) = link {
            let delivered = servers[link.0].delivered_to(link.1);
            for &seq in &delivered[*synced..] {
                let gi = self.by_seq[link.0][seq as usize];
                let note = &mut self.all[gi];
                if let Some(other) = note.written {
                    return Err(Violation::new(
                        1,
                        format!(
                            "expected a notification written to one bus connection, got seq {seq} \
                             written to {other:?} and {link:?}"
                        ),
                    ));
                }
                note.written = Some(link);
                self.stream.entry(link).or_default().push(gi);
                self.written
                    .entry((link, note.channel.clone()))
                    .or_default()
                    .push(gi);
            }
            *synced = delivered.len();
        }
        Ok(())
    }

    /// The first notification the bus has not read from `link`, having read
    /// `read` of them. If it read every one written, the next written comes
    /// after the last: one already committed but held by a busy backend
    /// (written at the end of its command) is unread too.
    pub(crate) fn first_unread(&self, link: LinkId, read: usize) -> usize {
        let stream = self.stream.get(&link).map_or(&[][..], Vec::as_slice);
        match stream.get(read) {
            Some(&gi) => gi,
            None => stream.last().map_or(0, |&gi| gi + 1),
        }
    }

    /// The global index of the application notification `(channel, payload)`.
    pub(crate) fn find(&self, channel: &str, payload: &str) -> Option<usize> {
        self.by_key
            .get(&(channel.to_owned(), payload.to_owned()))
            .copied()
    }

    /// Whether `(channel, payload)` was ever committed.
    pub(crate) fn committed(&self, channel: &str, payload: &str) -> bool {
        self.find(channel, payload).is_some()
    }

    /// How many notifications on `channel` were written to `link` with a
    /// global index in `lo..hi`.
    pub(crate) fn count_written(&self, link: LinkId, channel: &str, lo: usize, hi: usize) -> u64 {
        if lo >= hi {
            return 0;
        }
        let Some(list) = self.written.get(&(link, channel.to_owned())) else {
            return 0;
        };
        let a = list.partition_point(|&gi| gi < lo);
        let b = list.partition_point(|&gi| gi < hi);
        (b - a) as u64
    }

    /// The first few notifications on `channel` written to `link` in `lo..hi`,
    /// for messages.
    pub(crate) fn list_written(
        &self,
        link: LinkId,
        channel: &str,
        lo: usize,
        hi: usize,
    ) -> Vec<usize> {
        let Some(list) = self.written.get(&(link, channel.to_owned())) else {
            return Vec::new();
        };
        list.iter()
            .copied()
            .filter(|&gi| gi >= lo && gi < hi)
            .take(12)
            .collect()
    }
}
