//! Topologies: the graph a [`StreamsBuilder`](crate::StreamsBuilder) builds,
//! split into sub-topologies at repartition topics.

mod describe;
mod svg;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub use describe::{NodeDescription, SubTopologyDescription, TopologyDescription};

use crate::error::{EngineError, Result};
use crate::policy::ErrorPolicy;
use crate::processor::{Built, SourceFn};

/// Index of a node in its topology.
pub(crate) type NodeId = usize;

/// A topic as a topology names it: a user's topic, or an internal one whose
/// full name depends on the application id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicName {
    /// A topic the user owns, named as it is on the cluster.
    External(String),
    /// An internal repartition topic, `<application-id>-<name>-repartition`.
    Repartition(String),
}

impl TopicName {
    /// The topic's name on the cluster for `application_id`.
    pub fn resolve(&self, application_id: &str) -> String {
        match self {
            Self::External(topic) => topic.clone(),
            Self::Repartition(name) => format!("{application_id}-{name}-repartition"),
        }
    }

    /// The name as descriptions show it; internal topics keep a placeholder
    /// for the application id.
    pub fn display(&self) -> String {
        self.resolve("${application.id}")
    }
}

/// What a node is.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Source {
        topics: Vec<TopicName>,
        key_format: &'static str,
        value_format: &'static str,
    },
    Processor {
        operator: &'static str,
    },
    Sink {
        topic: TopicName,
        /// For a repartition topic: its partition count, when set.
        partitions: Option<i32>,
        key_format: &'static str,
        value_format: &'static str,
    },
}

/// Builds a node's instance for one task from its children's instances.
pub(crate) type Factory =
    Arc<dyn Fn(Vec<(Option<usize>, Built)>, &TaskEnv) -> Result<Built> + Send + Sync>;

/// Splits one instance into one per parent (see `processor::share_downstream`).
pub(crate) type Share = fn(Built, usize) -> Result<Vec<Built>>;

/// What a factory may know about the task it builds for.
pub(crate) struct TaskEnv {
    pub(crate) application_id: String,
    /// The task's opened stores.
    pub(crate) stores: Vec<crate::stores::OpenStore>,
    /// Callbacks a node wants run as wall-clock time passes.
    pub(crate) ticks: std::cell::RefCell<Vec<crate::processor::TickFn>>,
}

impl TaskEnv {
    /// The index and handle of the task's store `name`.
    pub(crate) fn store(&self, name: &str) -> Result<(usize, Arc<dyn state::KeyValueStore>)> {
        self.stores
            .iter()
            .position(|open| open.name == name)
            .map(|index| (index, Arc::clone(&self.stores[index].store)))
            .ok_or_else(|| {
                EngineError::Internal(format!("store {name} was not opened for the task"))
            })
    }
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<NodeId>,
    /// The branch index on the edge from the (single) parent, for branches.
    pub(crate) tag: Option<usize>,
    pub(crate) factory: Factory,
    pub(crate) share: Option<Share>,
    pub(crate) policy: Option<ErrorPolicy>,
    /// Stores the node declares.
    pub(crate) stores: Vec<crate::stores::StoreSpec>,
    /// Nodes this one reads the stores of (a join's table): no records flow
    /// between them, but they must run in the same task.
    pub(crate) links: Vec<NodeId>,
    /// Whether records may carry a key other than the one that placed them
    /// in their partition (a re-key upstream, not yet repartitioned).
    pub(crate) key_changed: bool,
}

/// A repartition topic and the partition count it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InternalTopic {
    pub(crate) name: TopicName,
    pub(crate) partitions: Option<i32>,
    /// The sub-topology that writes it.
    pub(crate) writer: usize,
}

/// A finished, validated topology: what the runtime and the test driver run.
pub struct Topology {
    pub(crate) nodes: Vec<Node>,
    pub(crate) children: Vec<Vec<NodeId>>,
    /// Nodes of each sub-topology, ascending.
    pub(crate) subtopologies: Vec<Vec<NodeId>>,
    /// Source topics of each sub-topology, with the source node reading them.
    pub(crate) source_topics: Vec<BTreeMap<TopicName, NodeId>>,
    /// Stores of each sub-topology, in declaration order.
    pub(crate) stores: Vec<Vec<crate::stores::StoreSpec>>,
    pub(crate) internal_topics: Vec<InternalTopic>,
    pub(crate) default_policy: ErrorPolicy,
    pub(crate) dead_letter_topic: Option<String>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe().to_string())
    }
}

impl Topology {
    pub(crate) fn new(
        nodes: Vec<Node>,
        default_policy: ErrorPolicy,
        dead_letter_topic: Option<String>,
    ) -> Result<Self> {
        if nodes.is_empty() {
            return Err(EngineError::Topology("the topology has no nodes".into()));
        }
        let mut children = vec![Vec::new(); nodes.len()];
        for (id, node) in nodes.iter().enumerate() {
            for &parent in &node.parents {
                children[parent].push(id);
            }
        }
        // Sub-topologies: connected components of the node graph. A
        // repartition is a sink and a separate source, so it splits them.
        let mut component: Vec<usize> = (0..nodes.len()).collect();
        fn root(component: &mut [usize], mut n: usize) -> usize {
            while component[n] != n {
                component[n] = component[component[n]];
                n = component[n];
            }
            n
        }
        for (id, node) in nodes.iter().enumerate() {
            for &parent in node.parents.iter().chain(&node.links) {
                let (a, b) = (root(&mut component, id), root(&mut component, parent));
                component[a.max(b)] = a.min(b);
            }
        }
        let mut numbering: HashMap<usize, usize> = HashMap::new();
        let mut subtopology_of = Vec::with_capacity(nodes.len());
        let mut subtopologies: Vec<Vec<NodeId>> = Vec::new();
        for id in 0..nodes.len() {
            let r = root(&mut component, id);
            let next = numbering.len();
            let sub = *numbering.entry(r).or_insert(next);
            if sub == subtopologies.len() {
                subtopologies.push(Vec::new());
            }
            subtopologies[sub].push(id);
            subtopology_of.push(sub);
        }

        let mut source_topics = vec![BTreeMap::new(); subtopologies.len()];
        let mut read_by: HashMap<TopicName, String> = HashMap::new();
        let mut internal_topics = Vec::new();
        let mut written: BTreeSet<TopicName> = BTreeSet::new();
        for (id, node) in nodes.iter().enumerate() {
            match &node.kind {
                NodeKind::Source { topics, .. } => {
                    for topic in topics {
                        if let Some(other) = read_by.insert(topic.clone(), node.name.clone()) {
                            return Err(EngineError::Topology(format!(
                                "topic {} is read by two sources, {other} and {}; \
                                 read it once and share the stream",
                                topic.display(),
                                node.name
                            )));
                        }
                        source_topics[subtopology_of[id]].insert(topic.clone(), id);
                    }
                }
                NodeKind::Sink { topic, .. } => {
                    written.insert(topic.clone());
                }
                NodeKind::Processor { .. } => {}
            }
        }
        for (id, node) in nodes.iter().enumerate() {
            if let NodeKind::Sink {
                topic: name @ TopicName::Repartition(_),
                partitions,
                ..
            } = &node.kind
            {
                if !read_by.contains_key(name) {
                    return Err(EngineError::Internal(format!(
                        "repartition topic {} has no reader",
                        name.display()
                    )));
                }
                internal_topics.push(InternalTopic {
                    name: name.clone(),
                    partitions: *partitions,
                    writer: subtopology_of[id],
                });
            }
        }
        internal_topics.sort_by(|a, b| a.name.cmp(&b.name));
        for topic in read_by
            .keys()
            .filter(|t| matches!(t, TopicName::Repartition(_)))
        {
            if !written.contains(topic) {
                return Err(EngineError::Internal(format!(
                    "repartition topic {} has no writer",
                    topic.display()
                )));
            }
        }
        let mut stores: Vec<Vec<crate::stores::StoreSpec>> = vec![Vec::new(); subtopologies.len()];
        let mut store_names = std::collections::HashSet::new();
        for (sub, ids) in subtopologies.iter().enumerate() {
            for &id in ids {
                for spec in &nodes[id].stores {
                    if !store_names.insert(spec.name.clone()) {
                        return Err(EngineError::Topology(format!(
                            "two stores are named {:?}; store names must be unique",
                            spec.name
                        )));
                    }
                    stores[sub].push(spec.clone());
                }
            }
        }
        Ok(Self {
            nodes,
            children,
            subtopologies,
            source_topics,
            stores,
            internal_topics,
            default_policy,
            dead_letter_topic,
        })
    }

    /// A stable description: sub-topologies, sources, processors, sinks and
    /// internal topics.
    pub fn describe(&self) -> TopologyDescription {
        describe::describe(self)
    }

    /// The topics the application reads that it does not own, sorted.
    pub fn external_source_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .source_topics
            .iter()
            .flat_map(|topics| topics.keys())
            .filter_map(|topic| match topic {
                TopicName::External(name) => Some(name.clone()),
                TopicName::Repartition(_) => None,
            })
            .collect();
        topics.sort();
        topics
    }

    /// Partition counts of the repartition topics, given those of the
    /// external source topics: as set, or the largest count among the
    /// writing sub-topology's sources.
    pub(crate) fn repartition_partitions(
        &self,
        external: &HashMap<TopicName, i32>,
    ) -> Result<HashMap<TopicName, i32>> {
        let mut known = external.clone();
        let mut resolved = HashMap::new();
        // A repartition's writer may itself read a repartition topic:
        // resolve until nothing changes (at most one round per topic).
        for _ in 0..=self.internal_topics.len() {
            let mut progress = false;
            for topic in &self.internal_topics {
                if resolved.contains_key(&topic.name) {
                    continue;
                }
                let count = match topic.partitions {
                    Some(n) => Some(n),
                    None => self.source_topics[topic.writer]
                        .keys()
                        .map(|source| known.get(source).copied())
                        .collect::<Option<Vec<i32>>>()
                        .and_then(|counts| counts.into_iter().max()),
                };
                if let Some(n) = count {
                    if n < 1 {
                        return Err(EngineError::Topology(format!(
                            "repartition topic {} needs at least one partition, not {n}",
                            topic.name.display()
                        )));
                    }
                    resolved.insert(topic.name.clone(), n);
                    known.insert(topic.name.clone(), n);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        if let Some(topic) = self
            .internal_topics
            .iter()
            .find(|t| !resolved.contains_key(&t.name))
        {
            return Err(EngineError::Topology(format!(
                "cannot size repartition topic {}: its writer reads no topic of known size",
                topic.name.display()
            )));
        }
        Ok(resolved)
    }

    /// The number of tasks of each sub-topology: the partition count its
    /// source topics share. Co-partitioned sources with different counts are
    /// an error naming them.
    pub(crate) fn task_counts(&self, partitions: &HashMap<TopicName, i32>) -> Result<Vec<i32>> {
        self.source_topics
            .iter()
            .enumerate()
            .map(|(sub, topics)| {
                let counts: Vec<(String, i32)> = topics
                    .keys()
                    .map(|topic| {
                        partitions
                            .get(topic)
                            .map(|n| (topic.display(), *n))
                            .ok_or_else(|| {
                                EngineError::Topics(format!(
                                    "no partition count for {}",
                                    topic.display()
                                ))
                            })
                    })
                    .collect::<Result<_>>()?;
                let first = counts.first().map(|(_, n)| *n).unwrap_or(0);
                if counts.iter().any(|(_, n)| *n != first) {
                    let listed: Vec<String> =
                        counts.iter().map(|(t, n)| format!("{t} has {n}")).collect();
                    return Err(EngineError::Topics(format!(
                        "sub-topology {sub} reads co-partitioned topics with different partition \
                         counts ({}); give them the same count or repartition one of them",
                        listed.join(", ")
                    )));
                }
                Ok(first)
            })
            .collect()
    }

    /// The error policy of node `id`.
    pub(crate) fn policy_of(&self, id: NodeId) -> ErrorPolicy {
        self.nodes
            .get(id)
            .and_then(|node| node.policy)
            .unwrap_or(self.default_policy)
    }

    /// The node ids whose name is `name`.
    pub(crate) fn node_named(&self, name: &str) -> Option<NodeId> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The dead-letter topic for `application_id`.
    pub fn dead_letter_topic(&self, application_id: &str) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{application_id}-dead-letters"))
    }

    /// Node names by id, for error reports.
    pub(crate) fn node_names(&self) -> Arc<[String]> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    /// Builds sub-topology `sub`'s instance for one partition: its sources,
    /// and which resolved topic each reads.
    pub(crate) fn instantiate(
        &self,
        sub: usize,
        env: &TaskEnv,
    ) -> Result<(Vec<SourceFn>, HashMap<String, usize>)> {
        let nodes = self
            .subtopologies
            .get(sub)
            .ok_or_else(|| EngineError::Internal(format!("no sub-topology {sub}")))?;
        let mut built: HashMap<NodeId, Vec<Built>> = HashMap::new();
        let mut sources = Vec::new();
        let mut routes = HashMap::new();
        // Children have larger ids than their parents: build in reverse.
        for &id in nodes.iter().rev() {
            let node = &self.nodes[id];
            let mut children = Vec::with_capacity(self.children[id].len());
            for &child in &self.children[id] {
                let instance = built
                    .get_mut(&child)
                    .and_then(Vec::pop)
                    .ok_or_else(|| EngineError::Internal(format!("node {child} was not built")))?;
                children.push((self.nodes[child].tag, instance));
            }
            let instance = (node.factory)(children, env)?;
            match &node.kind {
                NodeKind::Source { topics, .. } => {
                    let source = instance.downcast::<SourceFn>().map_err(|_| {
                        EngineError::Internal(format!("source {} built no source", node.name))
                    })?;
                    for topic in topics {
                        routes.insert(topic.resolve(&env.application_id), sources.len());
                    }
                    sources.push(*source);
                }
                _ => {
                    let parents = node.parents.len();
                    let instances = if parents > 1 {
                        let share = node.share.ok_or_else(|| {
                            EngineError::Internal(format!("node {} cannot be shared", node.name))
                        })?;
                        share(instance, parents)?
                    } else {
                        vec![instance]
                    };
                    built.insert(id, instances);
                }
            }
        }
        Ok((sources, routes))
    }
}
