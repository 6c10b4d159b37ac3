//! The typed DSL: [`StreamsBuilder`] and [`Stream`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{EngineError, ErrorClass, Result};
use crate::policy::ErrorPolicy;
use crate::processor::{Built, Ctx, Emitter, SourceFn, share_downstream};
use crate::record::{Data, Record};
use crate::serdes::Serde;
use crate::topology::{Factory, Node, NodeId, NodeKind, TaskEnv, TopicName, Topology};

/// Builds a [`Topology`] from typed streams.
///
/// ```
/// use engine::serdes::Utf8;
/// use engine::StreamsBuilder;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("words", Utf8, Utf8)
///     .map_values(|word: String| word.to_uppercase())
///     .to("shouted", Utf8, Utf8);
/// let topology = builder.build().unwrap();
/// assert_eq!(topology.external_source_topics(), ["words"]);
/// ```
#[derive(Clone, Default)]
pub struct StreamsBuilder {
    graph: Rc<RefCell<Graph>>,
}

#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<Node>,
    names: HashSet<String>,
    counters: HashMap<&'static str, usize>,
    errors: Vec<String>,
    default_policy: ErrorPolicy,
    dead_letter_topic: Option<String>,
}

impl Graph {
    pub(crate) fn record_error(&mut self, error: String) {
        self.errors.push(error);
    }

    fn auto_name(&mut self, operator: &'static str) -> String {
        loop {
            let counter = self.counters.entry(operator).or_insert(0);
            *counter += 1;
            let name = format!("{operator}-{counter}");
            if !self.names.contains(&name) {
                return name;
            }
        }
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of the records of `topic`, decoded with the given serdes.
    /// Its source node is named `<topic>-source` unless renamed with
    /// [`Stream::name`].
    pub fn stream<K: Data, V: Data>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Stream<K, V> {
        self.source(
            vec![TopicName::External(topic.to_owned())],
            key_serde,
            value_serde,
        )
    }

    /// A stream of the records of several topics with the same types. They
    /// must have the same partition count (they share tasks).
    pub fn streams<K: Data, V: Data>(
        &self,
        topics: &[&str],
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Stream<K, V> {
        let topics = topics
            .iter()
            .map(|t| TopicName::External((*t).to_owned()))
            .collect();
        self.source(topics, key_serde, value_serde)
    }

    pub(crate) fn from_graph(graph: Rc<RefCell<Graph>>) -> Self {
        Self { graph }
    }

    /// The policy for failing records, for every operator that sets none
    /// of its own. Default: [`ErrorPolicy::DeadLetter`].
    pub fn default_error_policy(&self, policy: ErrorPolicy) -> &Self {
        self.graph.borrow_mut().default_policy = policy;
        self
    }

    /// Where dead letters go. Default: `<application-id>-dead-letters`.
    pub fn dead_letter_topic(&self, topic: &str) -> &Self {
        self.graph.borrow_mut().dead_letter_topic = Some(topic.to_owned());
        self
    }

    /// Checks and freezes the topology.
    pub fn build(self) -> Result<Topology> {
        let mut graph = std::mem::take(&mut *self.graph.borrow_mut());
        if !graph.errors.is_empty() {
            return Err(EngineError::Topology(graph.errors.join("; ")));
        }
        if let Some(topic) = &graph.dead_letter_topic {
            validate_topic_name(topic).map_err(EngineError::Topology)?;
        }
        Topology::new(
            std::mem::take(&mut graph.nodes),
            graph.default_policy,
            graph.dead_letter_topic,
        )
    }

    pub(crate) fn source<K: Data, V: Data>(
        &self,
        topics: Vec<TopicName>,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Stream<K, V> {
        let mut graph = self.graph.borrow_mut();
        for topic in &topics {
            if let TopicName::External(name) = topic
                && let Err(error) = validate_topic_name(name)
            {
                graph.errors.push(error);
            }
        }
        let name = match topics.as_slice() {
            [TopicName::External(topic)] => format!("{topic}-source"),
            [TopicName::Repartition(name)] => format!("{name}-repartition-source"),
            _ => graph.auto_name("source"),
        };
        // A second source of the same topic gets another name, so that
        // `build()` reports the real problem: the topic is read twice.
        let name = if graph.names.contains(&name) {
            graph.auto_name("source")
        } else {
            name
        };
        let kind = NodeKind::Source {
            topics,
            key_format: key_serde.format(),
            value_format: value_serde.format(),
        };
        let id = graph.nodes.len();
        let (key_serde, value_serde) = (Arc::new(key_serde), Arc::new(value_serde));
        let factory: Factory = Arc::new(move |children, _env: &TaskEnv| {
            let mut out = Emitter::<K, V>::from_built(id, children)?;
            let (key_serde, value_serde) = (Arc::clone(&key_serde), Arc::clone(&value_serde));
            let source: SourceFn = Box::new(move |raw, ctx: &mut Ctx| {
                ctx.enter(id);
                let key = match key_serde.deserialize(raw.key.unwrap_or_default()) {
                    Ok(key) => key,
                    Err(error) => {
                        return ctx.fail(id, ErrorClass::Deserialization, format!("key: {error}"));
                    }
                };
                let value = match value_serde.deserialize_nullable(raw.value) {
                    Ok(value) => value,
                    Err(error) => {
                        return ctx.fail(
                            id,
                            ErrorClass::Deserialization,
                            format!("value: {error}"),
                        );
                    }
                };
                out.emit(
                    Record {
                        key,
                        value,
                        timestamp: raw.timestamp,
                    },
                    ctx,
                );
            });
            Ok(Box::new(source) as Built)
        });
        let name = unique(&mut graph, name);
        graph.nodes.push(Node {
            name,
            kind,
            parents: Vec::new(),
            tag: None,
            factory,
            share: None,
            policy: None,
            stores: Vec::new(),
            links: Vec::new(),
            key_changed: false,
        });
        Stream::new(Rc::clone(&self.graph), id)
    }
}

fn unique(graph: &mut Graph, name: String) -> String {
    if !graph.names.insert(name.clone()) {
        graph.errors.push(format!(
            "two nodes are named {name:?}; names must be unique"
        ));
    }
    name
}

/// Checks a topic name the way Kafka does.
pub(crate) fn validate_topic_name(topic: &str) -> std::result::Result<(), String> {
    if topic.is_empty() || topic == "." || topic == ".." {
        return Err(format!("{topic:?} is not a valid topic name"));
    }
    if topic.len() > 249 {
        return Err(format!(
            "topic name {topic:?} is longer than 249 characters"
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {topic:?} has {c:?}; use ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Operators that may give a record a key other than the one that chose
/// its partition.
const KEY_CHANGING: [&str; 4] = ["map", "select-key", "flat-map", "filter-map"];

/// A typed stream of records with keys `K` and values `V`.
///
/// Operators consume the stream and return a new one; to feed one stream
/// into several operators, `clone` it (records are then cloned per branch).
///
/// # Type errors are compile errors
///
/// A serde that does not fit the stream's types, a closure over the wrong
/// type, or a merge of streams of different types does not compile (each
/// example below checks the compiler's error code):
///
/// ```compile_fail,E0308
/// use engine::serdes::{Json, Utf8};
/// use engine::{Stream, StreamsBuilder};
///
/// let builder = StreamsBuilder::new();
/// // A key serde for `u32` where the key is declared `String`.
/// let stream: Stream<String, String> = builder.stream("in", Json::<u32>::new(), Utf8);
/// ```
///
/// ```compile_fail,E0277
/// use engine::serdes::{Json, Utf8};
/// use engine::StreamsBuilder;
///
/// let builder = StreamsBuilder::new();
/// // A value serde for `u32` on a stream of `String` values.
/// builder.stream("in", Utf8, Utf8).to("out", Utf8, Json::<u32>::new());
/// ```
///
/// ```compile_fail,E0631
/// use engine::serdes::Utf8;
/// use engine::StreamsBuilder;
///
/// let builder = StreamsBuilder::new();
/// // A filter over `&u32` values on a stream of `String` values.
/// builder
///     .stream("in", Utf8, Utf8)
///     .filter(|_key: &String, value: &u32| *value > 3)
///     .to("out", Utf8, Utf8);
/// ```
///
/// ```compile_fail,E0308
/// use engine::serdes::{Json, Utf8};
/// use engine::StreamsBuilder;
///
/// let builder = StreamsBuilder::new();
/// let text = builder.stream("text", Utf8, Utf8);
/// let numbers = builder.stream("numbers", Utf8, Json::<u32>::new());
/// // Merging `String` values with `u32` values.
/// text.merge(numbers).to("out", Utf8, Utf8);
/// ```
pub struct Stream<K, V> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) node: NodeId,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Stream<K, V> {
    fn clone(&self) -> Self {
        Self {
            graph: Rc::clone(&self.graph),
            node: self.node,
            _types: PhantomData,
        }
    }
}

impl<K: Data, V: Data> Stream<K, V> {
    pub(crate) fn new(graph: Rc<RefCell<Graph>>, node: NodeId) -> Self {
        Self {
            graph,
            node,
            _types: PhantomData,
        }
    }

    /// Renames the operator that produces this stream. Names show in
    /// descriptions, logs, metrics and dead-letter headers, and pick out an
    /// operator for [`Stream::on_error`].
    pub fn name(self, name: &str) -> Self {
        let mut graph = self.graph.borrow_mut();
        // After `build()` the graph is empty and a rename has nothing to do.
        if self.node < graph.nodes.len() {
            let old = std::mem::take(&mut graph.nodes[self.node].name);
            graph.names.remove(&old);
            let name = unique(&mut graph, name.to_owned());
            graph.nodes[self.node].name = name;
        }
        drop(graph);
        self
    }

    /// Sets the error policy of the operator that produces this stream.
    pub fn on_error(self, policy: ErrorPolicy) -> Self {
        if let Some(node) = self.graph.borrow_mut().nodes.get_mut(self.node) {
            node.policy = Some(policy);
        }
        self
    }

    /// Adds a node reading this stream. `make` builds the node's instance
    /// for a task from its node id, its children and the task's
    /// environment, and returns the typed entry point for records `(K, V)`.
    pub(crate) fn add<K2: Data, V2: Data>(
        &self,
        operator: &'static str,
        parents: Vec<NodeId>,
        tag: Option<usize>,
        make: impl Fn(NodeId, Vec<(Option<usize>, Built)>, &TaskEnv) -> Result<Built>
        + Send
        + Sync
        + 'static,
    ) -> Stream<K2, V2> {
        self.add_node(operator, parents, tag, Vec::new(), make)
    }

    /// Adds a one-input operator that declares `stores`, so that every task
    /// opens (and restores) them before processing.
    pub(crate) fn add_stateful<K2: Data, V2: Data>(
        &self,
        operator: &'static str,
        stores: Vec<crate::stores::StoreSpec>,
        make: impl Fn(NodeId, Vec<(Option<usize>, Built)>, &TaskEnv) -> Result<Built>
        + Send
        + Sync
        + 'static,
    ) -> Stream<K2, V2> {
        {
            let mut graph = self.graph.borrow_mut();
            for spec in &stores {
                if let Err(error) = state::validate_store_name(&spec.name) {
                    graph.record_error(error.to_string());
                }
            }
        }
        self.add_node(operator, vec![self.node], None, stores, make)
    }

    /// Adds a one-input operator that reads the stores of `links` (a join
    /// reading its table): it runs in the same tasks as they do.
    pub(crate) fn add_linked<K2: Data, V2: Data>(
        &self,
        operator: &'static str,
        links: Vec<NodeId>,
        make: impl Fn(NodeId, Vec<(Option<usize>, Built)>, &TaskEnv) -> Result<Built>
        + Send
        + Sync
        + 'static,
    ) -> Stream<K2, V2> {
        let stream: Stream<K2, V2> =
            self.add_node(operator, vec![self.node], None, Vec::new(), make);
        if let Some(node) = self.graph.borrow_mut().nodes.get_mut(stream.node) {
            node.links = links;
        }
        stream
    }

    pub(crate) fn record_error(&self, error: String) {
        self.graph.borrow_mut().record_error(error);
    }

    fn add_node<K2: Data, V2: Data>(
        &self,
        operator: &'static str,
        parents: Vec<NodeId>,
        tag: Option<usize>,
        stores: Vec<crate::stores::StoreSpec>,
        make: impl Fn(NodeId, Vec<(Option<usize>, Built)>, &TaskEnv) -> Result<Built>
        + Send
        + Sync
        + 'static,
    ) -> Stream<K2, V2> {
        let id = {
            let mut graph = self.graph.borrow_mut();
            let id = graph.nodes.len();
            let name = graph.auto_name(operator);
            let name = unique(&mut graph, name);
            let factory: Factory = Arc::new(move |children, env| make(id, children, env));
            let key_changed = KEY_CHANGING.contains(&operator)
                || parents
                    .iter()
                    .any(|p| graph.nodes.get(*p).is_some_and(|n| n.key_changed));
            graph.nodes.push(Node {
                name,
                kind: NodeKind::Processor { operator },
                parents,
                tag,
                factory,
                share: Some(share_downstream::<K, V>),
                policy: None,
                stores,
                links: Vec::new(),
                key_changed,
            });
            id
        };
        Stream::new(Rc::clone(&self.graph), id)
    }

    /// Whether records of this stream may sit in a partition their key
    /// does not choose (re-keyed upstream and not repartitioned since).
    pub(crate) fn key_changed(&self) -> bool {
        self.graph
            .borrow()
            .nodes
            .get(self.node)
            .is_some_and(|node| node.key_changed)
    }

    /// Adds a one-input operator whose records are `(K, V)`.
    pub(crate) fn then<K2: Data, V2: Data>(
        &self,
        operator: &'static str,
        make: impl Fn(NodeId, Vec<(Option<usize>, Built)>, &TaskEnv) -> Result<Built>
        + Send
        + Sync
        + 'static,
    ) -> Stream<K2, V2> {
        self.add(operator, vec![self.node], None, make)
    }

    /// Adds a sink node writing this stream to `topic`.
    pub(crate) fn sink(
        &self,
        topic: TopicName,
        partitions: Option<i32>,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> NodeId {
        let mut graph = self.graph.borrow_mut();
        if let TopicName::External(name) = &topic
            && let Err(error) = validate_topic_name(name)
        {
            graph.errors.push(error);
        }
        let name = match &topic {
            TopicName::External(topic) => format!("{topic}-sink"),
            TopicName::Repartition(name) => format!("{name}-repartition-sink"),
        };
        let name = if graph.names.contains(&name) {
            graph.auto_name("sink")
        } else {
            name
        };
        let name = unique(&mut graph, name);
        let key_changed = graph.nodes.get(self.node).is_some_and(|n| n.key_changed);
        let id = graph.nodes.len();
        let kind = NodeKind::Sink {
            topic: topic.clone(),
            partitions,
            key_format: key_serde.format(),
            value_format: value_serde.format(),
        };
        let (key_serde, value_serde) = (Arc::new(key_serde), Arc::new(value_serde));
        let factory: Factory = Arc::new(move |_children, env: &TaskEnv| {
            let topic: Arc<str> = topic.resolve(&env.application_id).into();
            let (key_serde, value_serde) = (Arc::clone(&key_serde), Arc::clone(&value_serde));
            let sink: crate::processor::Downstream<K, V> =
                Box::new(move |record, ctx: &mut Ctx| {
                    ctx.enter(id);
                    let mut key = Vec::new();
                    if let Err(error) = key_serde.serialize_into(&record.key, &mut key) {
                        return ctx.fail(id, ErrorClass::Serialization, format!("key: {error}"));
                    }
                    let value = match value_serde.serialize_nullable(&record.value) {
                        Ok(value) => value,
                        Err(error) => {
                            return ctx.fail(
                                id,
                                ErrorClass::Serialization,
                                format!("value: {error}"),
                            );
                        }
                    };
                    ctx.outputs.push(crate::record::OutputRecord {
                        topic: Arc::clone(&topic),
                        partition: None,
                        key: Some(key),
                        value,
                        timestamp: record.timestamp,
                        headers: ctx.headers.clone(),
                    });
                });
            Ok(crate::processor::built(sink))
        });
        graph.nodes.push(Node {
            name,
            kind,
            parents: vec![self.node],
            tag: None,
            factory,
            share: Some(share_downstream::<K, V>),
            policy: None,
            stores: Vec::new(),
            links: Vec::new(),
            key_changed,
        });
        id
    }
}
