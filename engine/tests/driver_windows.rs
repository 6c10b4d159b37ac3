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

/// Every window of `key` in the demand store, as (start, end, count).
fn windows_of(driver: &TestDriver, key: &str) -> Vec<(i64, i64, u64)> {
    driver
        .queries()
        .fetch_windows("demand", &key.to_owned(), i64::MIN, i64::MAX, &Utf8, &U64)
        .unwrap()
        .into_iter()
        .map(|(window, count)| {
            assert_eq!(window.key, key);
            (window.start, window.end, count)
        })
        .collect()
}

/// Emit on update with a retention of five minutes: windows stay readable
/// after they close (late records no longer change them) until stream
/// time reaches their start plus the retention, and not a millisecond
/// longer.
#[test]
fn retention_keeps_closed_windows_queryable_until_it_passes() {
    let windows = TimeWindows::tumbling(MINUTE)
        .grace(Duration::from_secs(10))
        .retention(5 * MINUTE);
    assert_eq!(windows.retention_ms(), 5 * M);
    let mut driver = TestDriver::new(demand_topology(windows)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    driver
        .pipe_at(&orders, "o1".into(), "latte".into(), 1_000)
        .unwrap();
    driver
        .pipe_at(&orders, "o2".into(), "mocha".into(), 30_000)
        .unwrap();
    // Open windows are readable.
    assert_eq!(windows_of(&driver, "latte"), [(0, M, 1)]);
    driver
        .pipe_at(&orders, "o3".into(), "latte".into(), M + 11_000)
        .unwrap(); // stream time 71 s: [0, 60 s) closed at 70 s
    driver
        .pipe_at(&orders, "late".into(), "latte".into(), 5_000)
        .unwrap(); // beyond grace: dropped
    assert_eq!(windows_of(&driver, "latte"), [(0, M, 1), (M, 2 * M, 1)]);
    assert_eq!(windows_of(&driver, "mocha"), [(0, M, 1)]);

    driver
        .pipe_at(&orders, "o4".into(), "tea".into(), 5 * M - 1)
        .unwrap(); // the first minute's last millisecond of retention
    assert_eq!(windows_of(&driver, "latte"), [(0, M, 1), (M, 2 * M, 1)]);
    driver
        .pipe_at(&orders, "o5".into(), "tea".into(), 5 * M)
        .unwrap();
    assert_eq!(
        windows_of(&driver, "latte"),
        [(M, 2 * M, 1)],
        "the first minute is dropped once stream time reaches its start + retention"
    );
    assert_eq!(windows_of(&driver, "mocha"), []);
    // Emit on update: every accepted record was emitted, the late one not.
    assert_eq!(results(&mut driver, &windows).len(), 5);
}

/// Emit final with a retention: a closed window is emitted once, stays
/// readable (with its final count) after it was emitted, is not changed
/// or emitted again by a late record, and is dropped when its retention
/// passes — without being emitted a second time.
#[test]
fn emit_final_windows_stay_queryable_after_their_single_emission() {
    let windows = TimeWindows::tumbling(MINUTE)
        .grace(Duration::from_secs(10))
        .retention(3 * MINUTE)
        .emit_final();
    let mut driver = TestDriver::new(demand_topology(windows)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    for (i, time) in [1_000, 20_000, 59_000].into_iter().enumerate() {
        driver
            .pipe_at(&orders, format!("o{i}"), "latte".into(), time)
            .unwrap();
    }
    assert_eq!(
        windows_of(&driver, "latte"),
        [(0, M, 3)],
        "readable while open"
    );
    assert!(results(&mut driver, &windows).is_empty());
    driver
        .pipe_at(&orders, "o3".into(), "latte".into(), M + 10_000)
        .unwrap(); // closes [0, 60 s)
    assert_eq!(
        results(&mut driver, &windows),
        [("latte".to_string(), 0, 3)]
    );
    assert_eq!(
        windows_of(&driver, "latte"),
        [(0, M, 3), (M, 2 * M, 1)],
        "readable after it was emitted"
    );
    driver
        .pipe_at(&orders, "late".into(), "latte".into(), 30_000)
        .unwrap();
    assert!(results(&mut driver, &windows).is_empty());
    assert_eq!(windows_of(&driver, "latte")[0], (0, M, 3));

    driver
        .pipe_at(&orders, "o4".into(), "latte".into(), 3 * M)
        .unwrap(); // drops [0, 60 s), closes [60 s, 120 s)
    assert_eq!(
        results(&mut driver, &windows),
        [("latte".to_string(), M, 1)],
        "each window is emitted once, the expired one not again"
    );
    assert_eq!(
        windows_of(&driver, "latte"),
        [(M, 2 * M, 1), (3 * M, 4 * M, 1)]
    );
}

/// The window queries never show the closed-bound entry the operator keeps
/// in the same store, even over the widest time span; the raw store shows
/// it is there.
#[test]
fn window_queries_exclude_the_closed_bound_entry() {
    let windows = TimeWindows::tumbling(MINUTE).emit_final();
    let mut driver = TestDriver::new(demand_topology(windows)).unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    driver
        .pipe_at(&orders, "o1".into(), "latte".into(), 1_000)
        .unwrap();
    driver
        .pipe_at(&orders, "o2".into(), "mocha".into(), 2 * M)
        .unwrap();
    let raw = driver
        .store_entries("demand", engine::serdes::RawBytes, engine::serdes::RawBytes)
        .unwrap();
    assert_eq!(raw.len(), 2, "one open window and the closed-bound entry");
    let all = driver
        .queries()
        .all_windows("demand", i64::MIN, i64::MAX, &Utf8, &U64)
        .unwrap();
    assert_eq!(
        all,
        [(
            Windowed {
                key: "mocha".to_string(),
                start: 2 * M,
                end: 3 * M
            },
            1
        )]
    );
    assert_eq!(
        driver
            .queries()
            .fetch_windows("demand", &String::new(), i64::MIN, i64::MAX, &Utf8, &U64)
            .unwrap(),
        [],
        "the entry's empty key is not a key with windows"
    );
}

/// Time-range queries: hopping windows overlap, a range selects windows by
/// start (both ends inclusive), `all_windows` merges every partition's
/// windows by start then key, and an empty or inverted range is empty.
#[test]
fn window_queries_select_by_start_across_partitions() {
    let windows = TimeWindows::hopping(MINUTE, Duration::from_secs(20)).retention(10 * MINUTE);
    let mut driver = TestDriver::builder(demand_topology(windows))
        .default_partitions(3)
        .build()
        .unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    for (i, drink) in ["latte", "mocha", "tea", "latte"].iter().enumerate() {
        driver
            .pipe_at(&orders, format!("o{i}"), (*drink).into(), 65_000)
            .unwrap();
    }
    let queries = driver.queries();
    let lattes = queries
        .fetch_windows("demand", &"latte".to_owned(), 40_000, 60_000, &Utf8, &U64)
        .unwrap();
    assert_eq!(
        lattes
            .iter()
            .map(|(w, c)| (w.start, w.end, *c))
            .collect::<Vec<_>>(),
        [(40_000, 100_000, 2), (60_000, 120_000, 2)]
    );
    let all: Vec<(i64, String, u64)> = queries
        .all_windows("demand", 20_000, 40_000, &Utf8, &U64)
        .unwrap()
        .into_iter()
        .map(|(w, c)| (w.start, w.key, c))
        .collect();
    assert_eq!(
        all,
        [
            (20_000, "latte".to_string(), 2),
            (20_000, "mocha".to_string(), 1),
            (20_000, "tea".to_string(), 1),
            (40_000, "latte".to_string(), 2),
            (40_000, "mocha".to_string(), 1),
            (40_000, "tea".to_string(), 1),
        ]
    );
    assert_eq!(
        queries
            .all_windows("demand", 60_001, 60_000, &Utf8, &U64)
            .unwrap(),
        []
    );
    assert_eq!(
        queries
            .all_windows("demand", 0, 19_999, &Utf8, &U64)
            .unwrap(),
        []
    );
}

/// A window store is read with window queries and a key-value store with
/// key queries; mixing them up, or naming no store, is a typed error.
#[test]
fn window_and_key_value_queries_refuse_the_other_kind_of_store() {
    use engine::queries::QueryError;

    let builder = StreamsBuilder::new();
    let orders = builder.stream("orders", Utf8, Utf8);
    orders
        .clone()
        .group_by_key(Utf8, Utf8)
        .windowed_by(TimeWindows::tumbling(MINUTE))
        .count("demand");
    orders.group_by_key(Utf8, Utf8).count("totals");
    let driver = TestDriver::new(builder.build().unwrap()).unwrap();
    let queries = driver.queries();
    let key = "latte".to_owned();
    assert!(matches!(
        queries.get("demand", &key, &Utf8, &U64),
        Err(QueryError::WrongStoreKind { kind: "window", .. })
    ));
    assert!(matches!(
        queries.range("demand", None, None, &Utf8, &U64),
        Err(QueryError::WrongStoreKind { kind: "window", .. })
    ));
    assert!(matches!(
        queries.fetch_windows("totals", &key, 0, 1, &Utf8, &U64),
        Err(QueryError::WrongStoreKind {
            kind: "key-value",
            ..
        })
    ));
    assert!(matches!(
        queries.all_windows("nope", 0, 1, &Utf8, &U64),
        Err(QueryError::UnknownStore(_))
    ));
    assert_eq!(
        queries
            .fetch_windows("demand", &key, 0, 1, &Utf8, &U64)
            .unwrap(),
        []
    );
}

/// A retention shorter than size + grace would drop windows before they
/// close: the topology does not build, and the error names the value.
#[test]
fn retention_below_size_plus_grace_is_a_build_error() {
    let windows = TimeWindows::tumbling(MINUTE)
        .retention(MINUTE)
        .grace(Duration::from_secs(1));
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .group_by_key(Utf8, Utf8)
        .windowed_by(windows)
        .count("demand");
    let error = builder.build().unwrap_err().to_string();
    assert!(
        error.contains("demand") && error.contains("60000 ms") && error.contains("61000 ms"),
        "{error}"
    );
    // Exactly size + grace is the default, and valid.
    let default = TimeWindows::tumbling(MINUTE).grace(Duration::from_secs(1));
    assert_eq!(default.retention_ms(), 61_000);
    demand_topology(default.retention(Duration::from_millis(61_000)));
}
