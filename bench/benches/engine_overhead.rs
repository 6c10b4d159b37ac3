//! The engine's per-record overhead on the in-memory test driver: time and
//! heap allocations per record for a map/filter chain, a repartition, a
//! count, a windowed count and a stream-table join. No broker: what is
//! measured is the engine's own work (operators, serdes, task routing,
//! store writes with their changelog records) around each record.
//!
//!     cargo bench -p bench --bench engine_overhead
//!
//! Allocations are counted by a global allocator wrapper and printed once
//! per case as `allocations per record`.

#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use engine::operators::TimeWindows;
use engine::serdes::{U64, Utf8};
use engine::{StreamsBuilder, TestDriver, Topology};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Records piped per measured batch.
const BATCH: u64 = 10_000;
const KEYS: u64 = 1_000;

fn chain() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, U64)
        .filter(|_, v| v % 7 != 0)
        .map_values(|v| v * 3)
        .filter(|_, v| v % 2 == 0)
        .map_values(|v| v + 1)
        .to("out", Utf8, U64);
    builder.build().expect("topology")
}

fn repartition() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, U64)
        .select_key(|_, v| format!("k{}", v % 97))
        .repartition("by-v", Utf8, U64)
        .to("out", Utf8, U64);
    builder.build().expect("topology")
}

fn count() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, U64)
        .group_by_key(Utf8, U64)
        .count("counts")
        .to_stream()
        .to("out", Utf8, U64);
    builder.build().expect("topology")
}

fn window() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, U64)
        .group_by_key(Utf8, U64)
        .windowed_by(TimeWindows::tumbling(Duration::from_secs(60)).grace(Duration::from_secs(60)))
        .count("per-minute")
        .to_stream()
        .map(|w, n| (w.key, n))
        .to("out", Utf8, U64);
    builder.build().expect("topology")
}

fn join() -> Topology {
    let builder = StreamsBuilder::new();
    let prices = builder.table("prices", Utf8, U64, "prices");
    builder
        .stream("in", Utf8, U64)
        .join(&prices, |v, price| v * price)
        .to("out", Utf8, U64);
    builder.build().expect("topology")
}

/// A driver with one partition per topic (one task: the cost of a record,
/// not of spreading records over tasks), the join's table filled.
fn driver(topology: Topology) -> TestDriver {
    let mut driver = TestDriver::builder(topology)
        .default_partitions(1)
        .build()
        .expect("driver");
    if driver.task_count() > 0 {
        let prices = driver.input_topic("prices", Utf8, U64);
        // Only the join reads `prices`; other topologies ignore the topic.
        for key in 0..KEYS {
            let _ = driver.pipe(&prices, format!("k{key}"), key + 1);
        }
    }
    driver
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|k| format!("k{k}")).collect()
}

fn pipe_batch(driver: &mut TestDriver, keys: &[String]) {
    let input = driver.input_topic("in", Utf8, U64);
    for i in 0..BATCH {
        driver
            .pipe_at(&input, keys[(i % KEYS) as usize].clone(), i, i as i64 * 10)
            .expect("pipe");
    }
}

fn case(c: &mut Criterion, name: &str, topology: fn() -> Topology) {
    let keys = keys();
    // Allocations per record, counted once over a warm batch.
    let mut warm = driver(topology());
    pipe_batch(&mut warm, &keys);
    let region = Region::new(GLOBAL);
    pipe_batch(&mut warm, &keys);
    let stats = region.change();
    eprintln!(
        "{name}: {:.1} allocations and {:.0} bytes allocated per record",
        stats.allocations as f64 / BATCH as f64,
        stats.bytes_allocated as f64 / BATCH as f64
    );
    drop(warm);

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(name, |b| {
        b.iter_batched(
            || driver(topology()),
            |mut driver| {
                pipe_batch(&mut driver, &keys);
                black_box(driver)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    case(c, "map-filter chain", chain);
    case(c, "repartition", repartition);
    case(c, "count", count);
    case(c, "window count", window);
    case(c, "stream-table join", join);
}

criterion_group! {
    name = engine;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(engine);
