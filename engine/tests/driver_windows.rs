//! Windowed aggregation on the test driver: tumbling and hopping windows,
//! out-of-order and late records within and beyond the grace period, one
//! final result per window, and windows closed by wall clock when a
//! partition goes idle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use engine::operators::{TimeWindows, Windowed, WindowedSerde};
use engine::serdes::{U64, Utf8};
use engine::{StreamsBuilder, TestDriver, Topology};

const MINUTE: Duration = Duration::from_secs(60);
const M: i64 = 60_000;

fn demand_topology(windows: TimeWindows) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .group_by(|_id: &String, drink: &String| drink.clone(), Utf8, Utf8)
        .windowed_by(windows)
        .count("demand")
        .to_stream()
        .to(
            "demand-out",
            WindowedSerde::new(Utf8, windows_size(&windows)),
            U64,
        );
    builder.build().unwrap()
}

fn windows_size(windows: &TimeWindows) -> Duration {
    Duration::from_millis(windows.size_ms() as u64)
}

fn results(driver: &mut TestDriver, windows: &TimeWindows) -> Vec<(String, i64, u64)> {
    let output = driver.output_topic(
        "demand-out",
        WindowedSerde::new(Utf8, windows_size(windows)),
        U64,
    );
    driver
        .read_key_values(&output)
        .unwrap()
        .into_iter()
        .map(|(Windowed { key, start, .. }, count)| (key, start, count))
        .collect()
}

/// Emit on update: every accepted record emits its window's new count;
/// an out-of-order record within the grace period still counts, one
/// beyond it is dropped.
#[test]
fn late_records_count_within_grace_and_are_dropped_beyond_it() {
    let windows = TimeWindows::tumbling(MINUTE).grace(Duration::from_secs(30));
    let mut driver = TestDriver::new(demand_topology(windows)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    driver
        .pipe_at(&orders, "o1".into(), "latte".into(), 10_000)
        .unwrap();
    driver
        .pipe_at(&orders, "o2".into(), "latte".into(), M + 20_000)
        .unwrap(); // stream time 80 s
    driver
        .pipe_at(&orders, "o3".into(), "latte".into(), 50_000)
        .unwrap(); // late, within grace (60 + 30 > 80)
    driver
        .pipe_at(&orders, "o4".into(), "latte".into(), M + 40_000)
        .unwrap(); // stream time 100 s
    driver
        .pipe_at(&orders, "o5".into(), "latte".into(), 55_000)
        .unwrap(); // beyond grace (60 + 30 <= 100)
    assert_eq!(
        results(&mut driver, &windows),
        [
            ("latte".to_string(), 0, 1),
            ("latte".to_string(), M, 1),
            ("latte".to_string(), 0, 2),
            ("latte".to_string(), M, 2),
        ]
    );
}

/// Emit final: exactly one result per window, when stream time passes its
/// end plus grace, with every record that arrived in time.
#[test]
fn emit_final_emits_exactly_one_result_per_window() {
    let windows = TimeWindows::tumbling(MINUTE)
        .grace(Duration::from_secs(10))
        .emit_final();
    let mut driver = TestDriver::new(demand_topology(windows)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    let times = [
        1_000, 30_000, 59_999, 61_000, 65_000, 5_000, 69_000, 70_000, 8_000, 125_000, 131_000,
    ];
    for (i, time) in times.iter().enumerate() {
        driver
            .pipe_at(&orders, format!("o{i}"), "latte".into(), *time)
            .unwrap();
        if *time == 65_000 {
            assert!(
                results(&mut driver, &windows).is_empty(),
                "nothing closes before end + grace"
            );
        }
    }
    // [0, 60 s) closed at 70 s with 4 records (5 s arrived in time, 8 s too late);
    // [60 s, 120 s) closed at 130 s with 4 records; [120 s, 180 s) is still open.
    assert_eq!(
        results(&mut driver, &windows),
        [("latte".to_string(), 0, 4), ("latte".to_string(), M, 4)]
    );
    driver
        .pipe_at(&orders, "late".into(), "latte".into(), 100_000)
        .unwrap();
    assert!(
        results(&mut driver, &windows).is_empty(),
        "a closed window never emits again"
    );
}

/// Hopping windows: a record counts in every window that covers it.
#[test]
fn hopping_windows_count_a_record_in_each_covering_window() {
    let windows = TimeWindows::hopping(MINUTE, Duration::from_secs(20));
    let mut driver = TestDriver::new(demand_topology(windows)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    driver
        .pipe_at(&orders, "o1".into(), "mocha".into(), 65_000)
        .unwrap();
    let starts: Vec<i64> = results(&mut driver, &windows)
        .into_iter()
        .map(|(_, start, _)| start)
        .collect();
    assert_eq!(starts, [20_000, 40_000, 60_000]);
}

/// A partition that goes quiet still closes its windows once it has been
/// idle for the configured wall-clock time; without the option it waits.
#[test]
fn idle_partitions_close_windows_by_wall_clock() {
    let windows = TimeWindows::tumbling(MINUTE)
        .emit_final()
        .close_when_idle(Duration::from_secs(5));
    let mut driver = TestDriver::new(demand_topology(windows)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    driver
        .pipe_at(&orders, "o1".into(), "latte".into(), 10_000)
        .unwrap();
    driver
        .pipe_at(&orders, "o2".into(), "latte".into(), 20_000)
        .unwrap();
    driver.advance_wall_clock(Duration::from_secs(4)).unwrap();
    assert!(
        results(&mut driver, &windows).is_empty(),
        "not idle long enough"
    );
    driver.advance_wall_clock(Duration::from_secs(60)).unwrap();
    assert_eq!(
        results(&mut driver, &windows),
        [("latte".to_string(), 0, 2)]
    );

    let quiet = TimeWindows::tumbling(MINUTE).emit_final();
    let mut driver = TestDriver::new(demand_topology(quiet)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    driver
        .pipe_at(&orders, "o1".into(), "latte".into(), 10_000)
        .unwrap();
    driver
        .advance_wall_clock(Duration::from_secs(3_600))
        .unwrap();
    assert!(
        results(&mut driver, &quiet).is_empty(),
        "without close_when_idle the window waits for records"
    );
}

/// Windowed state is kept per key and per window across partitions, and a
/// window's state is dropped once it is closed and emitted.
#[test]
fn windows_are_per_key_and_forgotten_after_closing() {
    let windows = TimeWindows::tumbling(MINUTE).emit_final();
    let mut driver = TestDriver::builder(demand_topology(windows))
        .default_partitions(3)
        .build()
        .unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    for (i, drink) in ["latte", "mocha", "latte", "tea", "latte"]
        .iter()
        .enumerate()
    {
        driver
            .pipe_at(&orders, format!("o{i}"), (*drink).into(), 1_000 * i as i64)
            .unwrap();
    }
    // Stream time is per task: move each drink's task past the window.
    for drink in ["latte", "mocha", "tea"] {
        driver
            .pipe_at(&orders, format!("{drink}-tick"), drink.into(), 2 * M)
            .unwrap();
    }
    let mut closed = results(&mut driver, &windows);
    closed.sort();
    assert_eq!(
        closed,
        [
            ("latte".to_string(), 0, 3),
            ("mocha".to_string(), 0, 1),
            ("tea".to_string(), 0, 1)
        ]
    );
    let open = driver
        .store_entries("demand", engine::serdes::RawBytes, U64)
        .unwrap();
    let tasks: std::collections::BTreeSet<i32> = ["latte", "mocha", "tea"]
        .iter()
        .map(|drink| engine::partitioner::partition_for_key(drink.as_bytes(), 3))
        .collect();
    assert_eq!(
        open.len(),
        3 + tasks.len(),
        "the three windows opened at 120 s, plus each task's closed-before mark; closed ones are gone"
    );
}
