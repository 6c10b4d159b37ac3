//! `windowed_by`: aggregate each key's records per time window — tumbling
//! or hopping, with a grace period for late records, emitting on every
//! update or once per window when it closes (by stream time, or by wall
//! clock when a partition goes idle), and keeping windows readable through
//! interactive queries for a configurable retention.
//!
//! # How windows are stored
//! A window store is a key-value store with time-first keys:
//! `ordered start ++ key bytes` ([`state::window::encode_index_key`]), the
//! value being the encoded aggregate. Closing and expiring windows are then
//! range scans from the oldest start, and "every window in a time span" is
//! one scan. One entry is not a window: at the smallest start, `i64::MIN`,
//! with an empty key, the operator keeps the bound below which every window
//! is closed, so a restart never reopens (or emits again) what was closed.
//! No window can start at `i64::MIN` (that bound starts above it), and every
//! reader of windows ([`scan_windows`]) starts above it.
//!
//! The engine does not use [`state::WindowStore`] here: that store keeps
//! every window twice (a key-first primary and a time index), which doubles
//! the writes of every update and of every restored changelog record, and
//! its changelog would need a format of its own. Its one advantage, reading
//! one key's windows without scanning the others of the same time span,
//! matters little while retention bounds what the store holds.

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
/// records are still accepted, how long windows are kept, and when results
/// are emitted.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindows {
    size: i64,
    advance: i64,
    grace: i64,
    /// `None`: size + grace.
    retention: Option<i64>,
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
            retention: None,
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
            retention: None,
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

    /// How long windows stay in the store, and readable through interactive
    /// queries, measured in stream time from each window's start: a window
    /// is dropped once stream time reaches `start + retention` (Kafka
    /// Streams' retention of window stores). It must be at least the window
    /// size plus the grace period, or the topology does not build: a window
    /// must not be dropped before it closes. The default is exactly size +
    /// grace, so a window is dropped as soon as it closes; a longer
    /// retention keeps a closed window queryable for `retention - size -
    /// grace` after it closed. With [`TimeWindows::emit_final`] a closed
    /// window is still emitted once only, however long it is kept.
    ///
    /// ```
    /// use std::time::Duration;
    /// use engine::operators::TimeWindows;
    /// use engine::serdes::Utf8;
    /// use engine::StreamsBuilder;
    ///
    /// let minute = Duration::from_secs(60);
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", Utf8, Utf8)
    ///     .group_by_key(Utf8, Utf8)
    ///     // 30 s is shorter than the 1-minute window plus its 10 s grace.
    ///     .windowed_by(
    ///         TimeWindows::tumbling(minute)
    ///             .grace(Duration::from_secs(10))
    ///             .retention(Duration::from_secs(30)),
    ///     )
    ///     .count("demand");
    /// let error = builder.build().unwrap_err().to_string();
    /// assert!(error.contains("retention of 30000 ms"), "{error}");
    /// ```
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(millis(retention));
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

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace
    }

    /// How long windows are kept, in milliseconds from their start (see
    /// [`TimeWindows::retention`]).
    pub fn retention_ms(&self) -> i64 {
        self.retention
            .unwrap_or_else(|| self.size.saturating_add(self.grace))
    }

    /// The smallest window start `>= bound`: windows start at multiples of
    /// `advance`, so "starts before `bound`" and "starts before the aligned
    /// bound" are the same windows, and the aligned bound moves only once
    /// per advance (one scan and one bound write per step, not per record).
    /// Clamped above the closed-bound entry's start.
    fn align_up(&self, bound: i64) -> i64 {
        let advance = i128::from(self.advance);
        let bound = i128::from(bound);
        let aligned = bound.div_euclid(advance) * advance
            + if bound.rem_euclid(advance) == 0 {
                0
            } else {
                advance
            };
        i64::try_from(aligned.clamp(i128::from(i64::MIN) + 1, i128::from(i64::MAX)))
            .unwrap_or(i64::MAX)
    }

    /// The first window start still open at stream time `time`: window
    /// `[start, start + size)` closes once `start + size + grace <= time`.
    fn closed_bound(&self, time: i64) -> i64 {
        self.align_up(
            time.saturating_sub(self.grace)
                .saturating_sub(self.size)
                .saturating_add(1),
        )
    }

    /// The first window start still kept at stream time `time`: a window is
    /// dropped once `start + retention <= time`.
    fn expired_bound(&self, time: i64) -> i64 {
        self.align_up(time.saturating_sub(self.retention_ms()).saturating_add(1))
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

/// The smallest start a real window can have: every window below the
/// initial closed bound is closed, so none is ever stored there.
pub(crate) const FIRST_WINDOW_START: i64 = CLOSED_BOUND_START + 1;

fn window_key(start: i64, key: &[u8]) -> Vec<u8> {
    state::window::encode_index_key(start, key)
}

/// A stored window: its start, its key's bytes and its value's bytes.
pub(crate) type RawWindow = (i64, Vec<u8>, Vec<u8>);

/// Every window of a window store whose start lies in `from..=to`, in
/// (start, key bytes) order. The closed-bound entry is never among them.
pub(crate) fn scan_windows(
    store: &dyn state::KeyValueStore,
    from: i64,
    to: i64,
) -> state::Result<Vec<RawWindow>> {
    let from = from.max(FIRST_WINDOW_START);
    if from > to {
        return Ok(Vec::new());
    }
    let lower = window_key(from, &[]);
    let upper = to.checked_add(1).map(|next| window_key(next, &[]));
    let mut windows = Vec::new();
    for entry in store.range(Some(&lower), upper.as_deref())? {
        let (stored, value) = entry?;
        let Some((start, key)) = state::window::decode_index_key(&stored) else {
            return Err(state::StateError::Corrupted {
                location: format!("window store {}", store.name()),
                message: format!("undecodable window key {stored:02x?}"),
            });
        };
        windows.push((start, key.to_vec(), value));
    }
    Ok(windows)
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
        let minimum = windows.size.saturating_add(windows.grace);
        if windows.retention_ms() < minimum {
            input.record_error(format!(
                "windowed store {store}: a retention of {} ms is shorter than the window size \
                 ({} ms) plus the grace period ({} ms); windows would be dropped before they \
                 close, so set it to at least {minimum} ms",
                windows.retention_ms(),
                windows.size,
                windows.grace,
            ));
        }
        let store_name = store.to_owned();
        let spec = StoreSpec {
            name: store_name.clone(),
            kind: StoreKind::Window {
                size_ms: windows.size,
            },
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
                    expired_before: FIRST_WINDOW_START,
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
    /// Every window starting before this has been dropped. Not persisted:
    /// after a restart the first expiry scans from the oldest window, which
    /// finds only what was not dropped yet.
    expired_before: i64,
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
        self.advance_to(ctx.stream_time, ctx);
    }

    fn on_tick(&mut self, ctx: &mut Ctx) {
        let (Some(idle), Some(last_wall)) = (self.windows.idle, self.last_record_wall) else {
            return;
        };
        let quiet = ctx.wall_clock.saturating_sub(last_wall);
        if quiet >= idle && ctx.stream_time > i64::MIN {
            ctx.enter(self.id);
            // Stream time is taken to move on with the wall clock: windows
            // close, and expire, as if records had kept it moving.
            self.advance_to(ctx.stream_time.saturating_add(quiet), ctx);
        }
    }

    /// Closes (emitting them under emit-final) the windows that have closed
    /// by stream time `time`, then drops those past their retention.
    fn advance_to(&mut self, time: i64, ctx: &mut Ctx) {
        self.close_until(time, ctx);
        if ctx.error.is_none() {
            self.expire(time, ctx);
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
            .map_or(FIRST_WINDOW_START, i64::from_be_bytes);
        self.closed_before = Some(bound);
        Some(bound)
    }

    /// Marks every window that has closed by `time` as closed; under
    /// emit-final, emits each of them first. Closed windows stay in the
    /// store (readable) until they expire; the persisted bound is what
    /// keeps them from being updated or emitted again.
    fn close_until(&mut self, time: i64, ctx: &mut Ctx) {
        let Some(closed_before) = self.closed_before(ctx) else {
            return;
        };
        let bound = self.windows.closed_bound(time);
        if bound <= closed_before {
            return;
        }
        if self.windows.emit == Emit::OnWindowClose {
            let Some(closing) = self.windows_between(closed_before, bound, ctx) else {
                return;
            };
            let size = self.windows.size;
            for (start, key_bytes, value) in closing {
                let decoded = self
                    .key_serde
                    .deserialize(&key_bytes)
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
        }
        self.store.put_raw(
            window_key(CLOSED_BOUND_START, &[]),
            bound.to_be_bytes().to_vec(),
            time,
            ctx,
        );
        self.closed_before = Some(bound);
    }

    /// Drops every window whose retention has passed by `time`.
    fn expire(&mut self, time: i64, ctx: &mut Ctx) {
        let bound = self.windows.expired_bound(time);
        if bound <= self.expired_before {
            return;
        }
        let Some(expired) = self.windows_between(self.expired_before, bound, ctx) else {
            return;
        };
        for (start, key_bytes, _) in expired {
            self.store.delete(window_key(start, &key_bytes), time, ctx);
        }
        self.expired_before = bound;
    }

    /// Every stored window starting in `from..to`, in time order; `None`
    /// after recording a store error in `ctx`.
    fn windows_between(&self, from: i64, to: i64, ctx: &mut Ctx) -> Option<Vec<RawWindow>> {
        match scan_windows(self.raw.as_ref(), from, to.saturating_sub(1)) {
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
    fn bounds_align_to_window_starts_and_never_reach_the_closed_bound_entry() {
        let windows = TimeWindows::hopping(Duration::from_secs(60), Duration::from_secs(20))
            .grace(Duration::from_secs(5))
            .retention(Duration::from_secs(120));
        // At 85 s, [20 s, 80 s) has closed (80 + 5 <= 85), [40 s, 100 s) not.
        assert_eq!(windows.closed_bound(85_000), 40_000);
        assert_eq!(windows.closed_bound(84_999), 20_000);
        // Kept while start + 120 s > time.
        assert_eq!(windows.expired_bound(139_999), 20_000);
        assert_eq!(windows.expired_bound(140_000), 40_000);
        assert_eq!(windows.closed_bound(0), -60_000);
        // Bounds saturate instead of overflowing, and never go below the
        // first possible window start (the closed-bound entry is below it).
        for time in [i64::MIN, i64::MIN + 1] {
            assert!(windows.closed_bound(time) >= FIRST_WINDOW_START);
            assert!(windows.expired_bound(time) >= FIRST_WINDOW_START);
            assert!(windows.closed_bound(time) < i64::MIN + 20_000);
        }
        // No overflow at the far end either.
        assert_eq!(windows.closed_bound(i64::MAX) % 20_000, 0);
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
