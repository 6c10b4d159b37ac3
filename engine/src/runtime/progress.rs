//! Which input offsets may be committed: an offset is safe once every output
//! of it and of every record before it in its partition is acknowledged.

use std::collections::VecDeque;

/// Progress of one input partition.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Input offsets with outputs not yet acknowledged, and how many, in
    /// ascending offset order (a partition is processed in order, so new
    /// offsets go to the back; entries at zero leave from the front).
    pending: VecDeque<(i64, u32)>,
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
            match self.pending.back_mut() {
                Some(back) if back.0 == offset => back.1 += outputs,
                Some(back) if back.0 > offset => {
                    // Out of order (not expected): keep the queue sorted.
                    match self.pending.binary_search_by_key(&offset, |e| e.0) {
                        Ok(i) => self.pending[i].1 += outputs,
                        Err(i) => self.pending.insert(i, (offset, outputs)),
                    }
                }
                _ => self.pending.push_back((offset, outputs)),
            }
        }
        self.next = Some(self.next.map_or(offset + 1, |next| next.max(offset + 1)));
    }

    /// Records an acknowledged output of `offset`.
    pub(crate) fn acked(&mut self, offset: i64) {
        // Acknowledgements mostly arrive in order: look at the front first.
        let index = match self.pending.front() {
            Some(front) if front.0 == offset => 0,
            _ => match self.pending.binary_search_by_key(&offset, |e| e.0) {
                Ok(i) => i,
                Err(_) => return,
            },
        };
        let entry = &mut self.pending[index];
        entry.1 = entry.1.saturating_sub(1);
        while self.pending.front().is_some_and(|e| e.1 == 0) {
            self.pending.pop_front();
        }
    }

    /// Records an output of `offset` that will never be acknowledged.
    pub(crate) fn failed(&mut self, offset: i64) {
        self.failed_at = Some(self.failed_at.map_or(offset, |at| at.min(offset)));
    }

    /// The offset to commit now (the next one to read), if it moved.
    pub(crate) fn committable(&self) -> Option<i64> {
        let safe = match (self.pending.front(), self.next) {
            (Some(&(first_pending, _)), _) => first_pending,
            (None, Some(next)) => next,
            (None, None) => return None,
        };
        let safe = self.failed_at.map_or(safe, |failed| safe.min(failed));
        match self.committed {
            Some(committed) if committed >= safe => None,
            _ => Some(safe),
        }
    }

    /// The last processed offset, for outputs not caused by a record
    /// (timers): attaching them there keeps the next commit waiting for them.
    pub(crate) fn last_processed(&self) -> Option<i64> {
        self.next.map(|next| next - 1)
    }

    /// One past the last processed offset: what exactly-once commits.
    pub(crate) fn position(&self) -> Option<i64> {
        self.next
    }

    /// Records a successful commit of `offset`.
    pub(crate) fn committed(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }

    /// Outputs not yet acknowledged.
    pub(crate) fn in_flight(&self) -> u64 {
        self.pending.iter().map(|(_, n)| u64::from(*n)).sum()
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
    fn acknowledgements_in_any_order_release_the_front_only_when_done() {
        let mut progress = Progress::default();
        for offset in 0..5 {
            progress.processed(offset, 1);
        }
        for offset in [3, 1, 4] {
            progress.acked(offset);
        }
        assert_eq!(progress.committable(), Some(0));
        progress.acked(0);
        assert_eq!(progress.committable(), Some(2), "1 is done too; 2 is not");
        progress.acked(2);
        assert_eq!(progress.committable(), Some(5));
        assert_eq!(progress.in_flight(), 0);
        progress.acked(9);
        assert_eq!(
            progress.committable(),
            Some(5),
            "an unknown ack changes nothing"
        );
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
