//! Group commit: publishes that queued while another was in flight share
//! one transaction, without ever letting PostgreSQL fold two of them.
//!
//! PostgreSQL delivers identical (channel, payload) pairs sent in one
//! transaction once. So a group is cut before a pair it already holds,
//! before it would exceed [`MAX_GROUP`] notifications, and around a
//! `notify_many` batch (which is a transaction of its own, as asked).
//! Order is kept: the groups are sent in order, and each holds a run of
//! consecutive publishes.

use std::collections::HashSet;

use crate::bus::publish::WaitingPublish;

/// The most notifications one group-commit transaction carries: enough to
/// make a commit's cost per notification negligible, small enough that a
/// failing one fails a bounded number of calls.
pub const MAX_GROUP: usize = 1000;

/// Splits `publishes`, in order, into the transactions that carry them.
pub(crate) fn transactions(publishes: Vec<WaitingPublish>) -> Vec<Vec<WaitingPublish>> {
    let mut groups: Vec<Vec<WaitingPublish>> = Vec::new();
    let mut current: Vec<WaitingPublish> = Vec::new();
    let mut size = 0;
    let mut pairs: HashSet<(String, String)> = HashSet::new();
    for publish in publishes {
        if publish.atomic {
            close(&mut groups, &mut current, &mut size, &mut pairs);
            groups.push(vec![publish]);
            continue;
        }
        let fits = size + publish.items.len() <= MAX_GROUP
            && publish.items.iter().all(|pair| !pairs.contains(pair));
        if !fits {
            close(&mut groups, &mut current, &mut size, &mut pairs);
        }
        size += publish.items.len();
        pairs.extend(publish.items.iter().cloned());
        current.push(publish);
    }
    close(&mut groups, &mut current, &mut size, &mut pairs);
    groups
}

fn close(
    groups: &mut Vec<Vec<WaitingPublish>>,
    current: &mut Vec<WaitingPublish>,
    size: &mut usize,
    pairs: &mut HashSet<(String, String)>,
) {
    if !current.is_empty() {
        groups.push(std::mem::take(current));
    }
    *size = 0;
    pairs.clear();
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::bus::output::PublishId;

    fn publish(id: u64, items: &[(&str, &str)], atomic: bool) -> WaitingPublish {
        let now = Instant::now();
        WaitingPublish {
            id: PublishId(id),
            items: items
                .iter()
                .map(|(c, p)| (c.to_string(), p.to_string()))
                .collect(),
            atomic,
            queued_at: now,
            deadline: now,
        }
    }

    fn ids(groups: &[Vec<WaitingPublish>]) -> Vec<Vec<u64>> {
        groups
            .iter()
            .map(|g| g.iter().map(|p| p.id.as_u64()).collect())
            .collect()
    }

    #[test]
    fn a_repeated_pair_starts_a_new_group_and_order_is_kept() {
        let groups = transactions(vec![
            publish(1, &[("a", "x")], false),
            publish(2, &[("a", "y")], false),
            publish(3, &[("a", "x")], false),
            publish(4, &[("b", "x")], false),
        ]);
        assert_eq!(ids(&groups), [vec![1, 2], vec![3, 4]]);
    }

    #[test]
    fn an_atomic_batch_is_a_transaction_of_its_own() {
        let groups = transactions(vec![
            publish(1, &[("a", "1")], false),
            publish(2, &[("a", "2"), ("a", "3")], true),
            publish(3, &[("a", "4")], false),
        ]);
        assert_eq!(ids(&groups), [vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn groups_hold_at_most_max_group_notifications() {
        let many: Vec<_> = (0..2 * MAX_GROUP + 1)
            .map(|i| publish(i as u64, &[("a", &i.to_string())], false))
            .collect();
        let sizes: Vec<usize> = transactions(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_GROUP, MAX_GROUP, 1]);
    }
}
