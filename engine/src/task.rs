//! Tasks: one sub-topology's instance for one partition.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{ErrorClass, Result};
use crate::processor::{Ctx, SourceFn};
use crate::record::RawRecord;
use crate::topology::{TaskEnv, Topology};

/// Identifies a task: a sub-topology and a partition number. Co-partitioned
/// source topics of one sub-topology share their tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: usize,
    /// The partition number of its source topics.
    pub partition: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// One sub-topology's operators, instantiated for one partition.
pub(crate) struct Task {
    pub(crate) id: TaskId,
    sources: Vec<SourceFn>,
    /// Names the application, sub-topology and partition in log events.
    pub(crate) span: tracing::Span,
    /// Resolved topic → source index; a task reads one or a few topics, so
    /// a scan beats hashing the name of every record.
    routes: Vec<(String, usize)>,
}

impl Task {
    pub(crate) fn new(topology: &Topology, id: TaskId, application_id: &str) -> Result<Self> {
        let env = TaskEnv {
            application_id: application_id.to_owned(),
        };
        let (sources, routes) = topology.instantiate(id.subtopology, &env)?;
        let span = tracing::info_span!(
            "task",
            application = application_id,
            subtopology = id.subtopology,
            partition = id.partition
        );
        Ok(Self {
            id,
            span,
            sources,
            routes: routes.into_iter().collect(),
        })
    }

    /// Runs one input record through the task. Its outputs, or its error,
    /// are left in `ctx` (which is reset first). A panic in user code is
    /// caught and becomes an error of class `panic`.
    pub(crate) fn process(&mut self, raw: &RawRecord<'_>, ctx: &mut Ctx) {
        ctx.reset();
        let Some(&(_, source)) = self.routes.iter().find(|(topic, _)| topic == raw.topic) else {
            ctx.fail(
                0,
                ErrorClass::Processing,
                format!("task {} does not read {}", self.id, raw.topic),
            );
            return;
        };
        let source = &mut self.sources[source];
        let result = catch_unwind(AssertUnwindSafe(|| source(raw, ctx)));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-text payload".to_owned());
            let node = ctx.current;
            ctx.error = None;
            ctx.fail(node, ErrorClass::Panic, message);
        }
    }
}
