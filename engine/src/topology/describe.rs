//! Stable descriptions of a topology, as text and as Mermaid.

use std::fmt;

use super::{NodeKind, Topology};

/// A description of a whole topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    /// The sub-topologies, in order.
    pub subtopologies: Vec<SubTopologyDescription>,
    /// Internal (repartition) topics and their partition counts (`None`:
    /// the same as the writing sub-topology's sources).
    pub internal_topics: Vec<(String, Option<i32>)>,
    /// Where records that fail under the dead-letter policy go.
    pub dead_letter_topic: String,
}

/// One sub-topology: the nodes that share tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopologyDescription {
    /// Its number.
    pub id: usize,
    /// Its nodes, sources first, in build order.
    pub nodes: Vec<NodeDescription>,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDescription {
    /// Its name.
    pub name: String,
    /// `Source`, `Processor` or `Sink`.
    pub role: &'static str,
    /// What it does, e.g. `map`, or the topics it reads or writes.
    pub detail: String,
    /// The topics a source reads or a sink writes.
    pub topics: Vec<String>,
    /// Names of its parents.
    pub predecessors: Vec<String>,
    /// Names of its children.
    pub successors: Vec<String>,
}

pub(super) fn describe(topology: &Topology) -> TopologyDescription {
    let name = |id: usize| topology.nodes[id].name.clone();
    let subtopologies = topology
        .subtopologies
        .iter()
        .enumerate()
        .map(|(sub, ids)| SubTopologyDescription {
            id: sub,
            nodes: ids
                .iter()
                .map(|&id| {
                    let node = &topology.nodes[id];
                    let (role, detail) = match &node.kind {
                        NodeKind::Source {
                            topics,
                            key_format,
                            value_format,
                        } => (
                            "Source",
                            format!(
                                "topics: [{}], serdes: {key_format}/{value_format}",
                                topics
                                    .iter()
                                    .map(|t| t.display())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                        NodeKind::Processor { operator } => ("Processor", (*operator).to_owned()),
                        NodeKind::Sink {
                            topic,
                            key_format,
                            value_format,
                            ..
                        } => (
                            "Sink",
                            format!(
                                "topic: {}, serdes: {key_format}/{value_format}",
                                topic.display()
                            ),
                        ),
                    };
                    let topics = match &node.kind {
                        NodeKind::Source { topics, .. } => {
                            topics.iter().map(|t| t.display()).collect()
                        }
                        NodeKind::Sink { topic, .. } => vec![topic.display()],
                        NodeKind::Processor { .. } => Vec::new(),
                    };
                    NodeDescription {
                        name: node.name.clone(),
                        role,
                        detail,
                        topics,
                        predecessors: node.parents.iter().map(|&p| name(p)).collect(),
                        successors: topology.children[id].iter().map(|&c| name(c)).collect(),
                    }
                })
                .collect(),
        })
        .collect();
    TopologyDescription {
        subtopologies,
        internal_topics: topology
            .internal_topics
            .iter()
            .map(|topic| (topic.name.display(), topic.partitions))
            .collect(),
        dead_letter_topic: topology.dead_letter_topic("${application.id}"),
    }
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topology")?;
        for sub in &self.subtopologies {
            writeln!(f, "  Sub-topology {}", sub.id)?;
            for node in &sub.nodes {
                writeln!(f, "    {}: {} ({})", node.role, node.name, node.detail)?;
                if !node.successors.is_empty() {
                    writeln!(f, "      --> {}", node.successors.join(", "))?;
                }
                if !node.predecessors.is_empty() {
                    writeln!(f, "      <-- {}", node.predecessors.join(", "))?;
                }
            }
        }
        if !self.internal_topics.is_empty() {
            writeln!(f, "  Internal topics")?;
            for (topic, partitions) in &self.internal_topics {
                match partitions {
                    Some(n) => writeln!(f, "    {topic} (partitions: {n})")?,
                    None => writeln!(f, "    {topic} (partitions: as its writer's sources)")?,
                }
            }
        }
        writeln!(f, "  Dead letters: {}", self.dead_letter_topic)
    }
}

impl TopologyDescription {
    /// The topology as a Mermaid flowchart: one subgraph per sub-topology,
    /// topics as stadium-shaped nodes.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        let id = |name: &str| {
            name.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        };
        let mut topics = std::collections::BTreeSet::new();
        let mut edges = Vec::new();
        for sub in &self.subtopologies {
            out.push_str(&format!(
                "  subgraph sub{}[\"Sub-topology {}\"]\n",
                sub.id, sub.id
            ));
            for node in &sub.nodes {
                let label = if node.role == "Processor" {
                    format!("{}<br/><i>{}</i>", node.name, node.detail)
                } else {
                    node.name.clone()
                };
                out.push_str(&format!("    n_{}[\"{}\"]\n", id(&node.name), label));
                for successor in &node.successors {
                    edges.push(format!("  n_{} --> n_{}\n", id(&node.name), id(successor)));
                }
                for topic in &node.topics {
                    topics.insert(topic.clone());
                    let edge = if node.role == "Source" {
                        format!("  t_{} --> n_{}\n", id(topic), id(&node.name))
                    } else {
                        format!("  n_{} --> t_{}\n", id(&node.name), id(topic))
                    };
                    edges.push(edge);
                }
            }
            out.push_str("  end\n");
        }
        for topic in &topics {
            out.push_str(&format!("  t_{}([\"{}\"])\n", id(topic), topic));
        }
        for edge in edges {
            out.push_str(&edge);
        }
        out
    }
}
