//! The runtime side of operators: how one task's instance of a topology
//! pushes records from node to node.
//!
//! A topology is a graph of node *factories*. For every task the factories
//! are called children-first, each receiving the typed entry points of its
//! children and returning its own, so a record moves through a task by plain
//! (dynamically dispatched) function calls: no queues, no boxing per record.

use std::any::Any;
use std::sync::{Arc, Mutex};

use crate::error::{EngineError, ErrorClass, ProcessingError, Result};
use crate::record::{OutputRecord, RawRecord, Record};

/// The typed entry point of a node in one task.
pub(crate) type Downstream<K, V> = Box<dyn FnMut(Record<K, V>, &mut Ctx) + Send>;

/// The entry point of a source node in one task: decodes and forwards.
pub(crate) type SourceFn = Box<dyn FnMut(&RawRecord<'_>, &mut Ctx) + Send>;

/// A node's callback as wall-clock time passes (e.g. closing idle windows).
pub(crate) type TickFn = Box<dyn FnMut(&mut Ctx) + Send>;

/// A node's built instance, type-erased until its parent takes it.
pub(crate) type Built = Box<dyn Any + Send>;

/// What processing one input record produced.
#[derive(Default)]
pub(crate) struct Ctx {
    /// Records to write, in order.
    pub(crate) outputs: Vec<OutputRecord>,
    /// The first error processing this input met; once set, nothing more is
    /// emitted for it.
    pub(crate) error: Option<ProcessingError>,
    /// The node running now, to blame a panic on.
    pub(crate) current: usize,
    /// Resolved node names by node id.
    pub(crate) names: Arc<[String]>,
    /// Records into and out of each node since the counts were last taken.
    pub(crate) counts: Vec<(u64, u64)>,
    /// Store writes of the record being processed, applied when it is done.
    pub(crate) pending: Vec<crate::stores::PendingWrite>,
    /// The task's stream time: the largest record timestamp it has seen.
    pub(crate) stream_time: i64,
    /// Wall-clock time in milliseconds (the test driver's own clock there).
    pub(crate) wall_clock: i64,
    /// The headers of the input record being processed (none while
    /// wall-clock callbacks run); sinks copy them onto what they write, so
    /// headers such as a request id travel through a topology.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

impl Ctx {
    pub(crate) fn new(names: Arc<[String]>) -> Self {
        let counts = vec![(0, 0); names.len()];
        Self {
            outputs: Vec::new(),
            error: None,
            current: 0,
            names,
            counts,
            pending: Vec::new(),
            stream_time: i64::MIN,
            wall_clock: 0,
            headers: Vec::new(),
        }
    }

    /// Records an error for the input being processed (the first one wins).
    pub(crate) fn fail(&mut self, node: usize, class: ErrorClass, message: impl ToString) {
        if self.error.is_none() {
            let operator = self.names.get(node).cloned().unwrap_or_default();
            self.error = Some(ProcessingError {
                operator,
                class,
                message: message.to_string(),
            });
        }
    }

    /// Marks `node` as running (to blame a panic on) and counts a record into it.
    #[inline]
    pub(crate) fn enter(&mut self, node: usize) {
        self.current = node;
        if let Some(counts) = self.counts.get_mut(node) {
            counts.0 += 1;
        }
    }

    #[inline]
    fn count_out(&mut self, node: usize) {
        if let Some(counts) = self.counts.get_mut(node) {
            counts.1 += 1;
        }
    }

    /// Takes the per-node (in, out) counts, leaving zeros.
    pub(crate) fn take_counts(&mut self) -> Vec<(u64, u64)> {
        let zeros = vec![(0, 0); self.counts.len()];
        std::mem::replace(&mut self.counts, zeros)
    }

    pub(crate) fn reset(&mut self) {
        self.outputs.clear();
        self.pending.clear();
        self.error = None;
    }
}

/// Forwards a node's output to its children; a branch's children carry the
/// index of the branch they take.
pub(crate) struct Emitter<K, V> {
    /// The node whose output this is, for its record count.
    node: usize,
    children: Vec<(Option<usize>, Downstream<K, V>)>,
}

impl<K: Clone, V: Clone> Emitter<K, V> {
    /// Takes the children handed to a node's factory.
    pub(crate) fn from_built(node: usize, children: Vec<(Option<usize>, Built)>) -> Result<Self>
    where
        K: 'static,
        V: 'static,
    {
        let children = children
            .into_iter()
            .map(|(tag, built)| {
                built
                    .downcast::<Downstream<K, V>>()
                    .map(|downstream| (tag, *downstream))
                    .map_err(|_| EngineError::Internal("a node's child has another type".into()))
            })
            .collect::<Result<_>>()?;
        Ok(Self { node, children })
    }

    /// Sends `record` to every child (cloning for all but the last).
    #[inline]
    pub(crate) fn emit(&mut self, record: Record<K, V>, ctx: &mut Ctx) {
        if ctx.error.is_some() {
            return;
        }
        ctx.count_out(self.node);
        match self.children.len() {
            0 => {}
            1 => (self.children[0].1)(record, ctx),
            n => {
                for (_, child) in &mut self.children[..n - 1] {
                    child(record.clone(), ctx);
                    // A failed child ends this input: later siblings must not see it.
                    if ctx.error.is_some() {
                        return;
                    }
                }
                (self.children[n - 1].1)(record, ctx);
            }
        }
    }

    /// Sends `record` only to the children of branch `tag`.
    pub(crate) fn emit_to(&mut self, tag: usize, record: Record<K, V>, ctx: &mut Ctx) {
        if ctx.error.is_some() {
            return;
        }
        ctx.count_out(self.node);
        let mut matching = self
            .children
            .iter_mut()
            .filter(|(t, _)| *t == Some(tag))
            .peekable();
        while let Some((_, child)) = matching.next() {
            if matching.peek().is_some() {
                child(record.clone(), ctx);
                if ctx.error.is_some() {
                    return;
                }
            } else {
                child(record, ctx);
                break;
            }
        }
    }
}

/// Boxes a typed entry point for the factory of its parent.
pub(crate) fn built<K: Send + 'static, V: Send + 'static>(downstream: Downstream<K, V>) -> Built {
    Box::new(downstream)
}

/// Turns one node instance into `n` entry points for a node with `n`
/// parents (a merge). The task is single-threaded, so the lock is never
/// contended; it only lets several parents own the same child.
pub(crate) fn share_downstream<K: Send + 'static, V: Send + 'static>(
    instance: Built,
    n: usize,
) -> Result<Vec<Built>> {
    let downstream = instance
        .downcast::<Downstream<K, V>>()
        .map_err(|_| EngineError::Internal("a shared node has another type".into()))?;
    let shared = Arc::new(Mutex::new(*downstream));
    Ok((0..n)
        .map(|_| {
            let shared = Arc::clone(&shared);
            let adapter: Downstream<K, V> = Box::new(move |record, ctx| {
                let mut child = shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                child(record, ctx);
            });
            built(adapter)
        })
        .collect())
}
