//! Which input offsets may be committed: an offset is safe once every output
//! of it and of every record before it in its partition is acknowledged.

use std::collections::BTreeMap;

/// Progress of one input partition.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Input offsets with outputs not yet acknowledged, and how many.
    pending: BTreeMap<i64, u32>,
    /// One past the last processed offset.
    next: Option<i64>,
    /// The last committed offset.
    committed: Option<i64>,
    /// An output of this offset failed for good: never commit past it.
    failed_at: Option<i64>,
}

impl Progress {
    /// Records that `offset` was processed and produced `outputs` records.
    pub(crate) fn processed(&mut self, offset: i64, outputs: u32) {
        if outputs > 0 {
            *self.pending.entry(offset).or_insert(0) += outputs;
        }
        self.next = Some(self.next.map_or(offset + 1, |next| next.max(offset + 1)));
    }

    /// Records an acknowledged output of `offset`.
    pub(crate) fn acked(&mut self, offset: i64) {
        if let Some(remaining) = self.pending.get_mut(&offset) {
            *remaining -= 1;
            if *remaining == 0 {
                self.pending.remove(&offset);
            }
        }
    }

    /// Records an output of `offset` that will never be acknowledged.
    pub(crate) fn failed(&mut self, offset: i64) {
        self.failed_at = Some(self.failed_at.map_or(offset, |at| at.min(offset)));
    }

    /// The offset to commit now (the next one to read), if it moved.
    pub(crate) fn committable(&self) -> Option<i64> {
        let safe = match (self.pending.keys().next(), self.next) {
            (Some(&first_pending), _) => first_pending,
            (None, Some(next)) => next,
            (None, None) => return None,
        };
        let safe = self.failed_at.map_or(safe, |failed| safe.min(failed));
        match self.committed {
            Some(committed) if committed >= safe => None,
            _ => Some(safe),
        }
    }

    /// Records a successful commit of `offset`.
    pub(crate) fn committed(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }

    /// Outputs not yet acknowledged.
    pub(crate) fn in_flight(&self) -> u64 {
        self.pending.values().map(|n| u64::from(*n)).sum()
    }

    /// One past the last processed offset.
    pub(crate) fn position(&self) -> Option<i64> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_up_to_the_first_unacknowledged_input() {
        let mut progress = Progress::default();
        assert_eq!(progress.committable(), None);
        progress.processed(10, 2);
        progress.processed(11, 0);
        progress.processed(12, 1);
        assert_eq!(
            progress.committable(),
            Some(10),
            "offset 10 still has outputs in flight"
        );
        progress.acked(12);
        assert_eq!(
            progress.committable(),
            Some(10),
            "a later ack does not move the commit"
        );
        progress.acked(10);
        assert_eq!(progress.committable(), Some(10));
        progress.acked(10);
        assert_eq!(
            progress.committable(),
            Some(13),
            "all acked: commit past the last processed"
        );
        progress.committed(13);
        assert_eq!(progress.committable(), None);
        assert_eq!(progress.in_flight(), 0);
    }

    #[test]
    fn a_failed_output_pins_the_commit_forever() {
        let mut progress = Progress::default();
        progress.processed(5, 1);
        progress.processed(6, 1);
        progress.failed(5);
        progress.acked(5);
        progress.acked(6);
        assert_eq!(progress.committable(), Some(5));
        progress.committed(5);
        progress.processed(7, 0);
        assert_eq!(progress.committable(), None);
    }
}
