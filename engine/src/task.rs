//! Tasks: one sub-topology's instance for one partition.

use std::panic::{AssertUnwindSafe, catch_unwind};

use std::sync::Arc;

use state::TaskState;

use crate::error::{EngineError, ErrorClass, Result};
use crate::processor::{Ctx, SourceFn};
use crate::record::RawRecord;
use crate::stores::{OpenStore, apply_pending, changelog_topic};
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
    /// The task's stores, in the sub-topology's declaration order.
    pub(crate) stores: Vec<OpenStore>,
    /// The largest record timestamp seen.
    stream_time: i64,
    /// Callbacks as wall-clock time passes.
    ticks: Vec<crate::processor::TickFn>,
}

impl Task {
    /// Builds the task, opening its stores from `state` (which must be
    /// given when the sub-topology declares stores).
    pub(crate) fn new(
        topology: &Topology,
        id: TaskId,
        application_id: &str,
        state: Option<&Arc<dyn TaskState>>,
    ) -> Result<Self> {
        let specs = topology
            .stores
            .get(id.subtopology)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut stores = Vec::with_capacity(specs.len());
        for spec in specs {
            let state = state.ok_or_else(|| {
                EngineError::Internal(format!("task {id} has stores but no state to open them in"))
            })?;
            stores.push(OpenStore {
                name: spec.name.clone(),
                store: state.key_value_store(&spec.name)?,
                changelog: Some((
                    changelog_topic(application_id, &spec.name).into(),
                    id.partition,
                )),
            });
        }
        let env = TaskEnv {
            application_id: application_id.to_owned(),
            stores: stores.clone(),
            ticks: std::cell::RefCell::new(Vec::new()),
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
            stores,
            stream_time: i64::MIN,
            ticks: env.ticks.into_inner(),
        })
    }

    /// Runs one input record through the task. Its outputs, or its error,
    /// are left in `ctx` (which is reset first). A panic in user code is
    /// caught and becomes an error of class `panic`.
    pub(crate) fn process(&mut self, raw: &RawRecord<'_>, now: i64, ctx: &mut Ctx) {
        ctx.reset();
        self.stream_time = self.stream_time.max(raw.timestamp);
        ctx.stream_time = self.stream_time;
        ctx.wall_clock = now;
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
        // The record is done: its store writes take effect (and go to the
        // changelog) only if nothing failed.
        if ctx.error.is_none()
            && !ctx.pending.is_empty()
            && let Err(error) = apply_pending(&self.stores, ctx)
        {
            let node = ctx.current;
            ctx.fail(
                node,
                ErrorClass::State,
                format!("writing the store: {error}"),
            );
        }
    }

    /// Whether any operator of the task wants [`Task::tick`] calls.
    pub(crate) fn has_ticks(&self) -> bool {
        !self.ticks.is_empty()
    }

    /// Lets operators act on the passing of wall-clock time `now`; outputs
    /// and store writes are left in `ctx` like a record's.
    pub(crate) fn tick(&mut self, now: i64, ctx: &mut Ctx) {
        ctx.reset();
        ctx.stream_time = self.stream_time;
        ctx.wall_clock = now;
        for tick in &mut self.ticks {
            let result = catch_unwind(AssertUnwindSafe(|| tick(ctx)));
            if result.is_err() {
                let node = ctx.current;
                ctx.fail(node, ErrorClass::Panic, "panic in a timer callback");
            }
        }
        if ctx.error.is_none()
            && !ctx.pending.is_empty()
            && let Err(error) = apply_pending(&self.stores, ctx)
        {
            let node = ctx.current;
            ctx.fail(
                node,
                ErrorClass::State,
                format!("writing the store: {error}"),
            );
        }
    }
}
