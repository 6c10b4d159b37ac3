//! `windowed_by`: aggregate each key's records per time window — tumbling
//! or hopping, with a grace period for late records, emitting on every
//! update or once per window when it closes (by stream time, or by wall
//! clock when a partition goes idle).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::ErrorClass;
use crate::operators::group::GroupedStream;
use crate::processor::{Ctx, Downstream, Emitter, TickFn, built};
use crate::record::{Data, Record};
use crate::serdes::{Serde, SerdeError, U64};
use crate::stores::{KvStore, StoreKind, StoreSpec};
use crate::table::Table;

/// A key and the window it was aggregated in (`start..end`, milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// Window start, inclusive.
    pub start: i64,
    /// Window end, exclusive.
    pub end: i64,
}

/// Encodes a [`Windowed`] key as the key's bytes followed by the window
/// start as 8 big-endian bytes (Kafka Streams' time-windowed key layout).
#[derive(Debug, Clone)]
pub struct WindowedSerde<S> {
    key_serde: S,
    size_ms: i64,
}

impl<S> WindowedSerde<S> {
    /// A serde for windowed keys of windows of `size`.
    pub fn new(key_serde: S, size: Duration) -> Self {
        Self {
            key_serde,
            size_ms: millis(size),
        }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for WindowedSerde<S> {
    fn serialize_into(&self, value: &Windowed<K>, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.key_serde.serialize_into(&value.key, buf)?;
        buf.extend_from_slice(&value.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        if bytes.len() < 8 {
            return Err(SerdeError::new(
                "windowed",
                "shorter than its 8-byte window start",
            ));
        }
        let (key, start) = bytes.split_at(bytes.len() - 8);
        let mut start_bytes = [0u8; 8];
        start_bytes.copy_from_slice(start);
        let start = i64::from_be_bytes(start_bytes);
        Ok(Windowed {
            key: self.key_serde.deserialize(key)?,
            start,
            end: start + self.size_ms,
        })
    }

    fn format(&self) -> &'static str {
        "windowed"
    }
}

/// When a window's aggregate goes downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// After every update.
    OnUpdate,
    /// Once, when the window closes: its end plus the grace period has
    /// passed in stream time (or, with `close_when_idle`, in extrapolated
    /// wall-clock time).
    OnWindowClose,
}

/// Time windows: their size, how far apart they start, how long late
/// records are still accepted, and when results are emitted.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindows {
    size: i64,
    advance: i64,
    grace: i64,
    emit: Emit,
    idle: Option<i64>,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl TimeWindows {
    /// Back-to-back windows of `size`: each record falls in exactly one.
    pub fn tumbling(size: Duration) -> Self {
        let size = millis(size).max(1);
        Self {
            size,
            advance: size,
            grace: 0,
            emit: Emit::OnUpdate,
            idle: None,
        }
    }

    /// Windows of `size` starting every `advance`: a record falls in
    /// `size / advance` of them.
    pub fn hopping(size: Duration, advance: Duration) -> Self {
        let size = millis(size).max(1);
        let advance = millis(advance).clamp(1, size);
        Self {
            size,
            advance,
            grace: 0,
            emit: Emit::OnUpdate,
            idle: None,
        }
    }

    /// Accepts records up to `grace` after their window's end (in stream
    /// time); later ones are dropped as late.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = millis(grace);
        self
    }

    /// Emits each window's final aggregate once, when it closes, instead of
    /// every update.
    pub fn emit_final(mut self) -> Self {
        self.emit = Emit::OnWindowClose;
        self
    }

    /// With [`TimeWindows::emit_final`]: when a partition has had no record
    /// for `after` of wall-clock time, stream time is taken to move on with
    /// the wall clock, so its windows still close and emit. Without it, a
    /// quiet partition holds its last windows back until a record arrives.
    pub fn close_when_idle(mut self, after: Duration) -> Self {
        self.idle = Some(millis(after));
        self
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size
    }

    /// Starts of the windows containing `timestamp`, ascending.
    fn starts(&self, timestamp: i64) -> impl Iterator<Item = i64> + use<> {
        let last = timestamp.div_euclid(self.advance) * self.advance;
        let (size, advance) = (self.size, self.advance);
        let count = (size + advance - 1) / advance;
        (0..count)
            .rev()
            .map(move |i| last - i * advance)
            .filter(move |start| *start <= timestamp && timestamp < start.saturating_add(size))
    }
}

/// A grouped stream cut into time windows, ready for an aggregation.
pub struct WindowedStream<K, V> {
    grouped: GroupedStream<K, V>,
    windows: TimeWindows,
}

impl<K: Data, V: Data> GroupedStream<K, V> {
    /// Aggregates per key and time window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use engine::operators::{TimeWindows, WindowedSerde};
    /// use engine::serdes::{U64, Utf8};
    /// use engine::{StreamsBuilder, TestDriver};
    ///
    /// let minute = Duration::from_secs(60);
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .group_by(|_id: &String, drink: &String| drink.clone(), Utf8, Utf8)
    ///     .windowed_by(TimeWindows::tumbling(minute).emit_final())
    ///     .count("demand-per-minute")
    ///     .to_stream()
    ///     .to("demand", WindowedSerde::new(Utf8, minute), U64);
    /// let mut driver = TestDriver::new(builder.build()?)?;
    /// let orders = driver.input_topic("orders", Utf8, Utf8);
    /// driver.pipe_at(&orders, "o1".into(), "latte".into(), 1_000)?;
    /// driver.pipe_at(&orders, "o2".into(), "latte".into(), 59_000)?;
    /// driver.pipe_at(&orders, "o3".into(), "latte".into(), 61_000)?; // closes the first minute
    /// let demand = driver.output_topic("demand", WindowedSerde::new(Utf8, minute), U64);
    /// let closed = driver.read_key_values(&demand)?;
    /// assert_eq!(closed.len(), 1);
    /// assert_eq!((closed[0].0.start, closed[0].1), (0, 2));
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn windowed_by(self, windows: TimeWindows) -> WindowedStream<K, V> {
        WindowedStream {
            grouped: self,
            windows,
        }
    }
}

type Step<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>;

/// Window state keys: the window start (order-preserving) then the key, so
/// windows close by a range scan in time order. The entry at the very
/// first start holds the bound below which every window is closed.
const CLOSED_BOUND_START: i64 = i64::MIN;

fn window_key(start: i64, key: &[u8]) -> Vec<u8> {
    state::window::encode_index_key(start, key)
}

impl<K: Data, V: Data> WindowedStream<K, V> {
    /// Counts each key's records per window.
    pub fn count(self, store: &str) -> Table<Windowed<K>, u64> {
        self.fold(
            "windowed-count",
            store,
            Arc::new(U64),
            Arc::new(|_, _, count| count.unwrap_or(0) + 1),
        )
    }

    /// Combines each key's records per window with `f(aggregate, value)`.
    pub fn reduce<F>(self, store: &str, f: F) -> Table<Windowed<K>, V>
    where
        F: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let value_serde = Arc::clone(&self.grouped.value_serde);
        self.fold(
            "windowed-reduce",
            store,
            value_serde,
            Arc::new(move |_, value, current| match current {
                Some(current) => f(current, value),
                None => value,
            }),
        )
    }

    /// Folds each key's records per window into an `A`, from `init()`.
    pub fn aggregate<A: Data, I, F>(
        self,
        store: &str,
        aggregate_serde: impl Serde<A>,
        init: I,
        f: F,
    ) -> Table<Windowed<K>, A>
    where
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&K, V, A) -> A + Send + Sync + 'static,
    {
        self.fold(
            "windowed-aggregate",
            store,
            Arc::new(aggregate_serde),
            Arc::new(move |key, value, current| f(key, value, current.unwrap_or_else(&init))),
        )
    }

    fn fold<A: Data>(
        self,
        operator: &'static str,
        store: &str,
        aggregate_serde: Arc<dyn Serde<A>>,
        step: Step<K, V, A>,
    ) -> Table<Windowed<K>, A> {
        let input = self.grouped.input(store);
        let key_serde = Arc::clone(&self.grouped.key_serde);
        let windows = self.windows;
        let store_name = store.to_owned();
        let spec = StoreSpec {
            name: store_name.clone(),
            kind: StoreKind::KeyValue,
        };
        let changes: crate::Stream<Windowed<K>, Option<A>> =
            input.add_stateful(operator, vec![spec], move |id, children, env| {
                let (index, handle) = env.store(&store_name)?;
                let state = Arc::new(Mutex::new(WindowOperator {
                    id,
                    windows,
                    store: KvStore::new(
                        index,
                        Arc::clone(&handle),
                        id,
                        Arc::clone(&key_serde),
                        Arc::clone(&aggregate_serde),
                    ),
                    raw: handle,
                    key_serde: Arc::clone(&key_serde),
                    aggregate_serde: Arc::clone(&aggregate_serde),
                    out: Emitter::<Windowed<K>, Option<A>>::from_built(id, children)?,
                    closed_before: None,
                    last_record_wall: None,
                }));
                if windows.emit == Emit::OnWindowClose && windows.idle.is_some() {
                    let ticking = Arc::clone(&state);
                    let tick: TickFn = Box::new(move |ctx: &mut Ctx| {
                        ticking
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .on_tick(ctx);
                    });
                    env.ticks.borrow_mut().push(tick);
                }
                let step = Arc::clone(&step);
                let entry: Downstream<K, V> =
                    Box::new(move |record: Record<K, V>, ctx: &mut Ctx| {
                        ctx.enter(id);
                        state
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .on_record(record, &step, ctx);
                    });
                Ok(built(entry))
            });
        // Window state is keyed by window and key: not a lookup by key.
        Table {
            changes: changes.name(store),
            store: Some(store.to_owned()),
            lookup: None,
        }
    }
}

/// One task's instance of a window aggregation.
struct WindowOperator<K, A> {
    id: usize,
    windows: TimeWindows,
    store: KvStore<K, A>,
    raw: Arc<dyn state::KeyValueStore>,
    key_serde: Arc<dyn Serde<K>>,
    aggregate_serde: Arc<dyn Serde<A>>,
    out: Emitter<Windowed<K>, Option<A>>,
    /// Every window starting before this is closed (loaded lazily, kept in
    /// the store so a restart does not reopen what was already emitted).
    closed_before: Option<i64>,
    last_record_wall: Option<i64>,
}

impl<K: Data, A: Data> WindowOperator<K, A> {
    fn on_record<V>(&mut self, record: Record<K, V>, step: &Step<K, V, A>, ctx: &mut Ctx)
    where
        V: Data,
    {
        self.last_record_wall = Some(ctx.wall_clock);
        let Some(closed_before) = self.closed_before(ctx) else {
            return;
        };
        let Some(key_bytes) = self.store.encode_key(&record.key, ctx) else {
            return;
        };
        let (size, grace) = (self.windows.size, self.windows.grace);
        let mut value = Some(record.value);
        let starts: Vec<i64> = self.windows.starts(record.timestamp).collect();
        let last = starts.len().saturating_sub(1);
        for (i, start) in starts.into_iter().enumerate() {
            let end = start.saturating_add(size);
            if start < closed_before || end.saturating_add(grace) <= ctx.stream_time {
                // Too late for this window: it has closed.
                continue;
            }
            // Each window needs its own copy of the value, but the last.
            let value = if i == last {
                value.take()
            } else {
                value.clone()
            };
            let Some(value) = value else {
                continue;
            };
            let window = window_key(start, &key_bytes);
            let Ok(current) = self.store.get(&window, ctx) else {
                return;
            };
            let updated = step(&record.key, value, current);
            if self
                .store
                .put(window, &updated, record.timestamp, ctx)
                .is_err()
            {
                return;
            }
            if self.windows.emit == Emit::OnUpdate {
                let key = Windowed {
                    key: record.key.clone(),
                    start,
                    end,
                };
                self.out.emit(
                    Record {
                        key,
                        value: Some(updated),
                        timestamp: record.timestamp,
                    },
                    ctx,
                );
            }
        }
        match self.windows.emit {
            Emit::OnWindowClose => self.close_until(ctx.stream_time, ctx),
            // Emitted windows need no state once no record can reach them.
            Emit::OnUpdate => self.expire(ctx.stream_time, ctx),
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx) {
        let (Some(idle), Some(last_wall)) = (self.windows.idle, self.last_record_wall) else {
            return;
        };
        let quiet = ctx.wall_clock.saturating_sub(last_wall);
        if quiet >= idle && ctx.stream_time > i64::MIN {
            ctx.enter(self.id);
            self.close_until(ctx.stream_time.saturating_add(quiet), ctx);
        }
    }

    /// The closed-before bound, read from the store the first time.
    fn closed_before(&mut self, ctx: &mut Ctx) -> Option<i64> {
        if let Some(bound) = self.closed_before {
            return Some(bound);
        }
        let stored = match self.raw.get(&window_key(CLOSED_BOUND_START, &[])) {
            Ok(stored) => stored,
            Err(error) => {
                ctx.fail(
                    self.id,
                    ErrorClass::State,
                    format!("reading the store: {error}"),
                );
                return None;
            }
        };
        let bound = stored
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(i64::MIN + 1, i64::from_be_bytes);
        self.closed_before = Some(bound);
        Some(bound)
    }

    /// Emits and forgets every window that has closed by `time`.
    fn close_until(&mut self, time: i64, ctx: &mut Ctx) {
        let Some(closed_before) = self.closed_before(ctx) else {
            return;
        };
        let bound = self.closed_bound(time);
        if bound <= closed_before {
            return;
        }
        let Some(closing) = self.windows_between(closed_before, bound, ctx) else {
            return;
        };
        let size = self.windows.size;
        for (window, value) in closing {
            let Some((start, key_bytes)) = state::window::decode_index_key(&window) else {
                continue;
            };
            let decoded = self
                .key_serde
                .deserialize(key_bytes)
                .and_then(|key| Ok((key, self.aggregate_serde.deserialize(&value)?)));
            let (key, aggregate) = match decoded {
                Ok(decoded) => decoded,
                Err(error) => {
                    return ctx.fail(
                        self.id,
                        ErrorClass::State,
                        format!("decoding a window: {error}"),
                    );
                }
            };
            let end = start.saturating_add(size);
            self.store.delete(window, end, ctx);
            let key = Windowed { key, start, end };
            self.out.emit(
                Record {
                    key,
                    value: Some(aggregate),
                    timestamp: end - 1,
                },
                ctx,
            );
            ctx.enter(self.id);
        }
        self.mark_closed(bound, time, ctx);
    }

    /// Drops windows no record can update any more (emit on update).
    fn expire(&mut self, time: i64, ctx: &mut Ctx) {
        let Some(closed_before) = self.closed_before(ctx) else {
            return;
        };
        let bound = self.closed_bound(time);
        // Expire in steps of a window, not on every record.
        if bound < closed_before.saturating_add(self.windows.size) {
            return;
        }
        let Some(expired) = self.windows_between(closed_before, bound, ctx) else {
            return;
        };
        for (window, _) in expired {
            self.store.delete(window, time, ctx);
        }
        self.mark_closed(bound, time, ctx);
    }

    /// The first window start still open at stream time `time`: window
    /// `[start, start + size)` closes once `start + size + grace <= time`.
    fn closed_bound(&self, time: i64) -> i64 {
        time.saturating_sub(self.windows.grace)
            .saturating_sub(self.windows.size)
            .saturating_add(1)
    }

    /// Every stored window starting in `from..to`, in time order; `None`
    /// after recording a store error in `ctx`.
    fn windows_between(
        &self,
        from: i64,
        to: i64,
        ctx: &mut Ctx,
    ) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let (from, to) = (window_key(from, &[]), window_key(to, &[]));
        let scanned = self
            .raw
            .range(Some(&from), Some(&to))
            .and_then(|entries| entries.collect::<Result<Vec<_>, _>>());
        match scanned {
            Ok(entries) => Some(entries),
            Err(error) => {
                ctx.fail(
                    self.id,
                    ErrorClass::State,
                    format!("scanning windows: {error}"),
                );
                None
            }
        }
    }

    /// Records that every window starting before `bound` is closed.
    fn mark_closed(&mut self, bound: i64, time: i64, ctx: &mut Ctx) {
        self.store.put_raw(
            window_key(CLOSED_BOUND_START, &[]),
            bound.to_be_bytes().to_vec(),
            time,
            ctx,
        );
        self.closed_before = Some(bound);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_hold_each_record_once() {
        let windows = TimeWindows::tumbling(Duration::from_secs(60));
        assert_eq!(windows.starts(0).collect::<Vec<_>>(), [0]);
        assert_eq!(windows.starts(59_999).collect::<Vec<_>>(), [0]);
        assert_eq!(windows.starts(60_000).collect::<Vec<_>>(), [60_000]);
        assert_eq!(windows.starts(-1).collect::<Vec<_>>(), [-60_000]);
    }

    #[test]
    fn hopping_windows_hold_each_record_size_over_advance_times() {
        let windows = TimeWindows::hopping(Duration::from_secs(60), Duration::from_secs(20));
        assert_eq!(
            windows.starts(65_000).collect::<Vec<_>>(),
            [20_000, 40_000, 60_000]
        );
        assert_eq!(
            windows.starts(60_000).collect::<Vec<_>>(),
            [20_000, 40_000, 60_000]
        );
        assert_eq!(
            windows.starts(59_999).collect::<Vec<_>>(),
            [0, 20_000, 40_000]
        );
    }

    #[test]
    fn windowed_keys_round_trip() {
        let serde = WindowedSerde::new(crate::serdes::Utf8, Duration::from_secs(60));
        let key = Windowed {
            key: "latte".to_owned(),
            start: 120_000,
            end: 180_000,
        };
        assert_eq!(
            serde.deserialize(&serde.serialize(&key).unwrap()).unwrap(),
            key
        );
        assert!(serde.deserialize(b"short").is_err());
    }
}
