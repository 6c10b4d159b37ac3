//! `split`: route each record to the first named branch whose predicate accepts it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Stream;
use crate::processor::{Ctx, Downstream, Emitter, built};
use crate::record::{Data, Record};

type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Collects the branches of a [`Stream::split`].
pub struct Splitter<K, V> {
    stream: Stream<K, V>,
    name: String,
    branches: Vec<(String, Predicate<K, V>)>,
}

/// The named branches of a split, each a stream of its own.
pub struct Branches<K, V> {
    branches: BTreeMap<String, Stream<K, V>>,
}

impl<K: Data, V: Data> Stream<K, V> {
    /// Splits the stream into named branches: each record goes to the first
    /// branch whose predicate accepts it, or to the default branch, or is
    /// dropped. Branch `b` of split `s` is an operator named `s-b`.
    ///
    /// ```
    /// use engine::{StreamsBuilder, TestDriver, serdes::Utf8};
    ///
    /// let builder = StreamsBuilder::new();
    /// let mut branches = builder
    ///     .stream("readings", Utf8, Utf8)
    ///     .split("level")
    ///     .branch("alert", |_k: &String, v: &String| v.parse::<i32>().unwrap_or(0) > 100)
    ///     .default_branch("normal");
    /// branches.take("alert").unwrap().to("alerts", Utf8, Utf8);
    /// branches.take("normal").unwrap().to("normal", Utf8, Utf8);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let input = driver.input_topic("readings", Utf8, Utf8);
    /// driver.pipe(&input, "s1".into(), "250".into())?;
    /// driver.pipe(&input, "s2".into(), "20".into())?;
    /// let alerts = driver.output_topic("alerts", Utf8, Utf8);
    /// assert_eq!(driver.read_key_values(&alerts)?, [("s1".to_string(), "250".to_string())]);
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn split(self, name: &str) -> Splitter<K, V> {
        Splitter {
            stream: self,
            name: name.to_owned(),
            branches: Vec::new(),
        }
    }
}

impl<K: Data, V: Data> Splitter<K, V> {
    /// Adds a branch taking the records `predicate` accepts (and no earlier
    /// branch took).
    pub fn branch<F>(mut self, name: &str, predicate: F) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.branches.push((name.to_owned(), Arc::new(predicate)));
        self
    }

    /// Ends the split with a branch taking every record no other branch took.
    pub fn default_branch(mut self, name: &str) -> Branches<K, V> {
        self.branches
            .push((name.to_owned(), Arc::new(|_: &K, _: &V| true)));
        self.finish()
    }

    /// Ends the split; records no branch takes are dropped.
    pub fn no_default_branch(self) -> Branches<K, V> {
        self.finish()
    }

    fn finish(self) -> Branches<K, V> {
        let predicates: Arc<[Predicate<K, V>]> = self
            .branches
            .iter()
            .map(|(_, predicate)| Arc::clone(predicate))
            .collect();
        let split: Stream<K, V> = self.stream.then("split", move |id, children, _env| {
            let predicates = Arc::clone(&predicates);
            let mut out = Emitter::<K, V>::from_built(id, children)?;
            let entry: Downstream<K, V> = Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                ctx.enter(id);
                if let Some(branch) = predicates
                    .iter()
                    .position(|p| p(&record.key, &record.value))
                {
                    out.emit_to(branch, record, ctx);
                }
            });
            Ok(built(entry))
        });
        let split = split.name(&self.name);
        let mut branches = BTreeMap::new();
        for (index, (branch, _)) in self.branches.iter().enumerate() {
            let stream: Stream<K, V> = split.add(
                "branch",
                vec![split.node],
                Some(index),
                move |id, children, _env| {
                    let mut out = Emitter::<K, V>::from_built(id, children)?;
                    let entry: Downstream<K, V> =
                        Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                            ctx.enter(id);
                            out.emit(record, ctx);
                        });
                    Ok(built(entry))
                },
            );
            branches.insert(
                branch.clone(),
                stream.name(&format!("{}-{branch}", self.name)),
            );
        }
        Branches { branches }
    }
}

impl<K: Data, V: Data> Branches<K, V> {
    /// Takes the branch named `name` out (a second take gives `None`).
    pub fn take(&mut self, name: &str) -> Option<Stream<K, V>> {
        self.branches.remove(name)
    }

    /// All remaining branches by name.
    pub fn into_map(self) -> BTreeMap<String, Stream<K, V>> {
        self.branches
    }
}
