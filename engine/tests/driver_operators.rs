//! Proves, on the `TestDriver` with multi-partition topics, what every operator does (outputs,
//! keys, timestamps, murmur2 placement, per-key order through repartitions), how error policies
//! treat failing records, and that invalid topologies are `Err`s from `build()`, not panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use engine::partitioner::partition_for_key;
use engine::serdes::{Json, RawBytes, Serde, SerdeError, Utf8};
use engine::{
    EngineError, ErrorClass, ErrorPolicy, Repartitioned, StreamsBuilder, TestDriver, TestRecord,
    Topology,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A driver with the given partition counts (other topics: 1 partition).
fn driver(topology: Topology, partitions: &[(&str, i32)]) -> TestDriver {
    let mut builder = TestDriver::builder(topology);
    for (topic, count) in partitions {
        builder = builder.partitions(topic, *count);
    }
    builder.build().unwrap()
}

/// Where Kafka's default partitioner puts a UTF-8 key.
fn part(key: &str, partitions: i32) -> i32 {
    partition_for_key(key.as_bytes(), partitions)
}

/// Every unread record of a topic (input, output or internal) with UTF-8 keys and values.
fn read_utf8(driver: &mut TestDriver, topic: &str) -> Vec<TestRecord<String, String>> {
    let output = driver.output_topic(topic, Utf8, Utf8);
    driver.read_records(&output).unwrap()
}

/// Every unread record of a topic with UTF-8 keys and JSON `u32` values.
fn read_u32(driver: &mut TestDriver, topic: &str) -> Vec<TestRecord<String, u32>> {
    let output = driver.output_topic(topic, Utf8, Json::<u32>::new());
    driver.read_records(&output).unwrap()
}

/// Asserts every record sits in the partition murmur2 of its UTF-8 key picks, that the
/// offsets of each partition count up from 0, and that the records use every partition.
fn assert_placed_by_key<V>(records: &[TestRecord<String, V>], partitions: i32) {
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for record in records {
        assert_eq!(
            record.partition,
            part(&record.key, partitions),
            "key {:?} is in the wrong partition",
            record.key
        );
        let expected = next_offset.entry(record.partition).or_insert(0);
        assert_eq!(
            record.offset, *expected,
            "offsets of partition {}",
            record.partition
        );
        *expected += 1;
    }
    assert_eq!(
        next_offset.len(),
        partitions as usize,
        "the test's keys should cover all {partitions} partitions"
    );
}

/// The build error of a builder that must not build.
fn build_error(builder: StreamsBuilder) -> String {
    match builder.build() {
        Ok(topology) => panic!("expected a build error, got a topology:\n{topology:?}"),
        Err(EngineError::Topology(message)) => message,
        Err(other) => panic!("expected EngineError::Topology, got {other:?}"),
    }
}

/// The error of a driver that must not build.
fn driver_error(topology: Topology, partitions: &[(&str, i32)]) -> EngineError {
    let mut builder = TestDriver::builder(topology);
    for (topic, count) in partitions {
        builder = builder.partitions(topic, *count);
    }
    match builder.build() {
        Ok(_) => panic!("expected the driver not to build"),
        Err(error) => error,
    }
}

/// A JSON `u32` serde that refuses to encode 13.
#[derive(Clone, Copy)]
struct RefusesThirteen;

impl Serde<u32> for RefusesThirteen {
    fn serialize_into(&self, value: &u32, buf: &mut Vec<u8>) -> Result<(), SerdeError> {
        if *value == 13 {
            return Err(SerdeError::new("json", "13 is not allowed"));
        }
        Json::<u32>::new().serialize_into(value, buf)
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<u32, SerdeError> {
        Json::<u32>::new().deserialize(bytes)
    }

    fn format(&self) -> &'static str {
        "json"
    }
}

// ---------------------------------------------------------------------------------------------
// Stateless operators
// ---------------------------------------------------------------------------------------------

#[test]
fn map_rewrites_key_and_value_keeps_timestamp_and_output_is_placed_by_new_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .map(|key: String, value: String| (value, format!("from {key}")))
        .to("out", Utf8, Utf8);
    let mut driver = driver(builder.build().unwrap(), &[("in", 4), ("out", 5)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    for i in 0..200 {
        driver
            .pipe_at(&input, format!("k-{i}"), format!("v-{i}"), 1_000 + i)
            .unwrap();
    }
    assert_placed_by_key(&read_utf8(&mut driver, "in"), 4);

    let out = read_utf8(&mut driver, "out");
    assert_eq!(out.len(), 200);
    for (i, record) in (0..200).zip(&out) {
        assert_eq!(record.key, format!("v-{i}"));
        assert_eq!(record.value, format!("from k-{i}"));
        assert_eq!(record.timestamp, 1_000 + i);
    }
    assert_placed_by_key(&out, 5);
}

#[test]
fn map_values_changes_only_the_value_and_keeps_key_and_timestamp() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Json::<u32>::new())
        .map_values(|n| format!("n={}", n * 3))
        .to("out", Utf8, Utf8);
    let mut driver = driver(builder.build().unwrap(), &[("in", 3), ("out", 3)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    for i in 0..60u32 {
        driver
            .pipe_at(&input, format!("key-{i}"), i, i64::from(i) * 7)
            .unwrap();
    }
    let inputs = read_u32(&mut driver, "in");
    let out = read_utf8(&mut driver, "out");
    assert_eq!(out.len(), 60);
    for ((i, record), input) in (0..60u32).zip(&out).zip(&inputs) {
        assert_eq!(record.key, format!("key-{i}"));
        assert_eq!(record.value, format!("n={}", i * 3));
        assert_eq!(record.timestamp, i64::from(i) * 7);
        // Same key bytes and same partition count: the same partition as the input.
        assert_eq!(record.partition, input.partition);
    }
    assert_placed_by_key(&out, 3);
}

#[test]
fn filter_keeps_only_accepted_records_in_arrival_order() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Json::<u32>::new())
        .filter(|key, n| n % 3 == 0 && !key.ends_with('7'))
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 4), ("out", 4)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    for i in 0..100u32 {
        driver
            .pipe_at(&input, format!("k{i}"), i, i64::from(i))
            .unwrap();
    }
    let out = read_u32(&mut driver, "out");
    let expected: Vec<(String, u32, i64)> = (0..100u32)
        .filter(|i| i % 3 == 0 && i % 10 != 7)
        .map(|i| (format!("k{i}"), i, i64::from(i)))
        .collect();
    let actual: Vec<(String, u32, i64)> = out
        .iter()
        .map(|r| (r.key.clone(), r.value, r.timestamp))
        .collect();
    assert_eq!(actual, expected);
    assert!(actual.iter().all(|(key, _, _)| key != "k27"));
    assert_placed_by_key(&out, 4);
}

#[test]
fn filter_map_drops_none_and_emits_mapped_some_with_input_timestamp() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .filter_map(|key: String, value: String| {
            value
                .parse::<u32>()
                .ok()
                .map(|n| (format!("{key}!"), n + 1))
        })
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 3), ("out", 6)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    let mut expected = Vec::new();
    for i in 0..90u32 {
        let value = if i % 4 == 0 {
            format!("not a number {i}")
        } else {
            i.to_string()
        };
        driver
            .pipe_at(&input, format!("id-{i}"), value, 5_000 - i64::from(i))
            .unwrap();
        if i % 4 != 0 {
            expected.push((format!("id-{i}!"), i + 1, 5_000 - i64::from(i)));
        }
    }
    let out = read_u32(&mut driver, "out");
    let actual: Vec<(String, u32, i64)> = out
        .iter()
        .map(|r| (r.key.clone(), r.value, r.timestamp))
        .collect();
    assert_eq!(actual, expected);
    assert_placed_by_key(&out, 6);
    assert!(
        driver.dead_letters().is_empty(),
        "None is a drop, not an error"
    );
}

#[test]
fn flat_map_emits_every_item_in_order_with_the_input_timestamp_and_none_for_empty() {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Utf8, Utf8)
        .flat_map(|line_id: String, line: String| {
            line.split_whitespace()
                .enumerate()
                .map(|(i, word)| (word.to_owned(), format!("{line_id}#{i}")))
                .collect::<Vec<_>>()
        })
        .to("words", Utf8, Utf8);
    let mut driver = driver(builder.build().unwrap(), &[("lines", 3), ("words", 4)]);
    let input = driver.input_topic("lines", Utf8, Utf8);
    driver
        .pipe_at(&input, "l1".into(), "the quick brown fox".into(), 10)
        .unwrap();
    driver
        .pipe_at(&input, "l2".into(), "   ".into(), 20)
        .unwrap();
    driver
        .pipe_at(&input, "l3".into(), "jumps over the lazy dog".into(), 30)
        .unwrap();
    let out = read_utf8(&mut driver, "words");
    let actual: Vec<(&str, &str, i64)> = out
        .iter()
        .map(|r| (r.key.as_str(), r.value.as_str(), r.timestamp))
        .collect();
    assert_eq!(
        actual,
        [
            ("the", "l1#0", 10),
            ("quick", "l1#1", 10),
            ("brown", "l1#2", 10),
            ("fox", "l1#3", 10),
            ("jumps", "l3#0", 30),
            ("over", "l3#1", 30),
            ("the", "l3#2", 30),
            ("lazy", "l3#3", 30),
            ("dog", "l3#4", 30),
        ]
    );
    for record in &out {
        assert_eq!(record.partition, part(&record.key, 4));
    }
}

#[test]
fn peek_sees_every_record_once_across_partitions_and_passes_it_unchanged() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .peek(move |key, value| log.lock().unwrap().push((key.clone(), value.clone())))
        .to("out", Utf8, Utf8);
    let mut driver = driver(builder.build().unwrap(), &[("in", 5), ("out", 5)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    let mut piped = Vec::new();
    for i in 0..100 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        driver
            .pipe_at(&input, key.clone(), value.clone(), i)
            .unwrap();
        piped.push((key, value));
    }
    assert_placed_by_key(&read_utf8(&mut driver, "in"), 5);
    assert_eq!(*seen.lock().unwrap(), piped);
    let out = read_utf8(&mut driver, "out");
    let passed: Vec<(String, String)> = out
        .iter()
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    assert_eq!(passed, piped);
    assert!(out.iter().zip(0..).all(|(r, i)| r.timestamp == i));
}

#[test]
fn select_key_replaces_the_key_keeps_value_and_timestamp_and_output_follows_new_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .select_key(|order_id, customer| format!("{customer}/{}", order_id.len()))
        .to("by-customer", Utf8, Utf8);
    let mut driver = driver(
        builder.build().unwrap(),
        &[("orders", 3), ("by-customer", 4)],
    );
    let input = driver.input_topic("orders", Utf8, Utf8);
    for i in 0..80 {
        driver
            .pipe_at(
                &input,
                format!("order-{i}"),
                format!("cust-{}", i % 9),
                100 + i,
            )
            .unwrap();
    }
    let out = read_utf8(&mut driver, "by-customer");
    assert_eq!(out.len(), 80);
    for (i, record) in (0..80).zip(&out) {
        let order_id = format!("order-{i}");
        assert_eq!(record.key, format!("cust-{}/{}", i % 9, order_id.len()));
        assert_eq!(record.value, format!("cust-{}", i % 9));
        assert_eq!(record.timestamp, 100 + i);
    }
    assert_placed_by_key(&out, 4);
}

#[test]
fn try_map_values_emits_ok_values_and_dead_letters_errors_as_processing() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .try_map_values(|value: String| value.parse::<u32>().map(|n| n * 2))
        .name("parse")
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 3), ("out", 3)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    driver.pipe_at(&input, "a".into(), "21".into(), 1).unwrap();
    driver.pipe_at(&input, "b".into(), "x".into(), 2).unwrap();
    driver.pipe_at(&input, "c".into(), "4".into(), 3).unwrap();
    let out = read_u32(&mut driver, "out");
    let actual: Vec<(&str, u32, i64)> = out
        .iter()
        .map(|r| (r.key.as_str(), r.value, r.timestamp))
        .collect();
    assert_eq!(actual, [("a", 42, 1), ("c", 8, 3)]);
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].operator, "parse");
    assert_eq!(dead[0].class, "processing");
    assert_eq!(dead[0].partition, part("b", 3));
    assert_eq!(dead[0].value.as_deref(), Some(&b"x"[..]));
    assert!(
        dead[0].message.contains("invalid digit"),
        "{}",
        dead[0].message
    );
}

#[test]
fn split_routes_each_record_only_to_the_first_matching_branch() {
    let builder = StreamsBuilder::new();
    let mut branches = builder
        .stream("readings", Utf8, Json::<u32>::new())
        .split("level")
        .branch("critical", |_, n| *n >= 100)
        .branch("even", |_, n| n % 2 == 0)
        .branch("small", |_, n| *n < 10)
        .default_branch("other");
    for branch in ["critical", "even", "small", "other"] {
        branches
            .take(branch)
            .unwrap()
            .to(branch, Utf8, Json::<u32>::new());
    }
    let mut driver = driver(builder.build().unwrap(), &[("readings", 4)]);
    let input = driver.input_topic("readings", Utf8, Json::<u32>::new());
    // 200 is critical and even; 4 is even and small; 3 is small; 15 is none.
    let values = [200u32, 4, 3, 15, 101, 50, 7, 99];
    for (i, value) in values.iter().enumerate() {
        driver
            .pipe_at(&input, format!("sensor-{i}"), *value, i as i64)
            .unwrap();
    }
    let values_of = |driver: &mut TestDriver, topic: &str| -> Vec<u32> {
        read_u32(driver, topic)
            .into_iter()
            .map(|r| r.value)
            .collect()
    };
    assert_eq!(values_of(&mut driver, "critical"), [200, 101]);
    assert_eq!(values_of(&mut driver, "even"), [4, 50]);
    assert_eq!(values_of(&mut driver, "small"), [3, 7]);
    assert_eq!(values_of(&mut driver, "other"), [15, 99]);
}

#[test]
fn split_default_branch_gets_every_record_no_predicate_accepts_with_key_and_timestamp() {
    let builder = StreamsBuilder::new();
    let mut branches = builder
        .stream("in", Utf8, Utf8)
        .split("kind")
        .branch("digits", |_, v| v.chars().all(|c| c.is_ascii_digit()))
        .default_branch("rest");
    branches.take("digits").unwrap().to("digits", Utf8, Utf8);
    branches.take("rest").unwrap().to("rest", Utf8, Utf8);
    assert!(branches.take("rest").is_none(), "a branch is taken once");
    let mut driver = driver(builder.build().unwrap(), &[("in", 3), ("rest", 3)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    for i in 0..30 {
        let value = if i % 3 == 0 {
            format!("{i}")
        } else {
            format!("x{i}")
        };
        driver.pipe_at(&input, format!("k{i}"), value, i).unwrap();
    }
    let rest = read_utf8(&mut driver, "rest");
    let expected: Vec<(String, String, i64)> = (0..30)
        .filter(|i| i % 3 != 0)
        .map(|i| (format!("k{i}"), format!("x{i}"), i))
        .collect();
    let actual: Vec<(String, String, i64)> = rest
        .iter()
        .map(|r| (r.key.clone(), r.value.clone(), r.timestamp))
        .collect();
    assert_eq!(actual, expected);
    assert_placed_by_key(&rest, 3);
    assert_eq!(read_utf8(&mut driver, "digits").len(), 10);
}

#[test]
fn split_without_default_branch_drops_records_no_branch_accepts() {
    let builder = StreamsBuilder::new();
    let mut branches = builder
        .stream("in", Utf8, Json::<u32>::new())
        .split("parity")
        .branch("even", |_, n| n % 2 == 0)
        .no_default_branch();
    branches
        .take("even")
        .unwrap()
        .to("even", Utf8, Json::<u32>::new());
    assert!(branches.into_map().is_empty());
    let mut driver = driver(builder.build().unwrap(), &[("in", 4)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    for i in 0..20u32 {
        driver.pipe(&input, format!("k{i}"), i).unwrap();
    }
    let even: Vec<u32> = read_u32(&mut driver, "even")
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(even, (0..20).step_by(2).collect::<Vec<u32>>());
    assert!(driver.dead_letters().is_empty(), "dropping is not an error");
    assert!(driver.skipped().is_empty(), "dropping is not an error");
}

#[test]
fn merge_forwards_both_streams_in_arrival_order() {
    let builder = StreamsBuilder::new();
    let web = builder.stream("web", Utf8, Utf8);
    let app = builder
        .stream("app", Utf8, Utf8)
        .map_values(|v: String| format!("app:{v}"));
    web.merge(app).to("all", Utf8, Utf8);
    let mut driver = driver(
        builder.build().unwrap(),
        &[("web", 3), ("app", 3), ("all", 4)],
    );
    let (web, app) = (
        driver.input_topic("web", Utf8, Utf8),
        driver.input_topic("app", Utf8, Utf8),
    );
    let mut expected = Vec::new();
    for i in 0..40 {
        if i % 3 == 0 {
            driver
                .pipe_at(&app, format!("o{i}"), format!("{i}"), i)
                .unwrap();
            expected.push((format!("o{i}"), format!("app:{i}"), i));
        } else {
            driver
                .pipe_at(&web, format!("o{i}"), format!("{i}"), i)
                .unwrap();
            expected.push((format!("o{i}"), format!("{i}"), i));
        }
    }
    let all = read_utf8(&mut driver, "all");
    let actual: Vec<(String, String, i64)> = all
        .iter()
        .map(|r| (r.key.clone(), r.value.clone(), r.timestamp))
        .collect();
    assert_eq!(actual, expected);
    assert_placed_by_key(&all, 4);
}

#[test]
fn merge_of_two_branches_of_one_stream_receives_each_path_once() {
    let builder = StreamsBuilder::new();
    let numbers = builder.stream("in", Utf8, Json::<u32>::new());
    let evens = numbers.clone().filter(|_, n| n % 2 == 0);
    let tens = numbers.map_values(|n| n * 10);
    evens.merge(tens).to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 3)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    for n in 1..=4u32 {
        driver.pipe(&input, format!("k{n}"), n).unwrap();
    }
    let out: Vec<u32> = read_u32(&mut driver, "out")
        .into_iter()
        .map(|r| r.value)
        .collect();
    // Children run in the order they were added: the filter first, then the map.
    assert_eq!(out, [10, 2, 20, 30, 4, 40]);
}

#[test]
fn fan_out_gives_every_downstream_operator_its_own_copy_of_each_record() {
    let builder = StreamsBuilder::new();
    let words = builder.stream("words", Utf8, Utf8);
    words
        .clone()
        .map_values(|w: String| w.to_uppercase())
        .to("upper", Utf8, Utf8);
    words
        .clone()
        .map_values(|w: String| w.len() as u32)
        .to("lengths", Utf8, Json::<u32>::new());
    words.to("copy", Utf8, Utf8);
    let mut driver = driver(
        builder.build().unwrap(),
        &[("words", 4), ("upper", 2), ("lengths", 3), ("copy", 5)],
    );
    let input = driver.input_topic("words", Utf8, Utf8);
    let words = ["alpha", "be", "gamma", "delta", "epsilon", "zeta", "eta"];
    for (i, word) in words.iter().enumerate() {
        driver
            .pipe_at(&input, format!("w{i}"), (*word).to_owned(), i as i64)
            .unwrap();
    }
    let upper = read_utf8(&mut driver, "upper");
    let lengths = read_u32(&mut driver, "lengths");
    let copy = read_utf8(&mut driver, "copy");
    assert_eq!(
        upper.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(),
        ["ALPHA", "BE", "GAMMA", "DELTA", "EPSILON", "ZETA", "ETA"]
    );
    assert_eq!(
        lengths.iter().map(|r| r.value).collect::<Vec<_>>(),
        [5, 2, 5, 5, 7, 4, 3]
    );
    assert_eq!(
        copy.iter().map(|r| r.value.as_str()).collect::<Vec<_>>(),
        words
    );
    for (topic, records, partitions) in [("upper", &upper, 2), ("copy", &copy, 5)] {
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.key, format!("w{i}"), "{topic}");
            assert_eq!(record.timestamp, i as i64, "{topic}");
            assert_eq!(record.partition, part(&record.key, partitions), "{topic}");
        }
    }
    assert!(lengths.iter().all(|r| r.partition == part(&r.key, 3)));
}

#[test]
fn to_places_each_record_by_murmur2_of_its_serialized_key_bytes() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Json::<u32>::new(), Utf8)
        .to("out", Json::<u32>::new(), Utf8);
    let mut driver = driver(builder.build().unwrap(), &[("in", 6), ("out", 6)]);
    let input = driver.input_topic("in", Json::<u32>::new(), Utf8);
    for key in 0..120u32 {
        driver.pipe(&input, key, format!("v{key}")).unwrap();
    }
    let output = driver.output_topic("out", Json::<u32>::new(), Utf8);
    let out = driver.read_records(&output).unwrap();
    assert_eq!(out.len(), 120);
    let mut used = BTreeSet::new();
    for record in &out {
        // JSON encodes 42 as the two bytes "42": that is what murmur2 hashes.
        let bytes = serde_json::to_vec(&record.key).unwrap();
        assert_eq!(record.partition, partition_for_key(&bytes, 6));
        used.insert(record.partition);
    }
    assert_eq!(used.len(), 6);
}

#[test]
fn streams_reads_every_listed_topic_into_one_stream() {
    let builder = StreamsBuilder::new();
    builder
        .streams(&["eu-orders", "us-orders"], Utf8, Utf8)
        .map_values(|v: String| v.to_uppercase())
        .to("orders", Utf8, Utf8);
    let topology = builder.build().unwrap();
    assert_eq!(
        topology.external_source_topics(),
        ["eu-orders", "us-orders"]
    );
    let mut driver = driver(topology, &[("eu-orders", 2), ("us-orders", 2)]);
    assert_eq!(
        driver.task_count(),
        2,
        "co-partitioned topics share their tasks"
    );
    let eu = driver.input_topic("eu-orders", Utf8, Utf8);
    let us = driver.input_topic("us-orders", Utf8, Utf8);
    driver.pipe(&eu, "1".into(), "croissant".into()).unwrap();
    driver.pipe(&us, "2".into(), "bagel".into()).unwrap();
    let out: Vec<(String, String)> = read_utf8(&mut driver, "orders")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        out,
        [
            ("1".into(), "CROISSANT".into()),
            ("2".into(), "BAGEL".into())
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Repartitioning
// ---------------------------------------------------------------------------------------------

#[test]
fn select_key_then_repartition_keeps_per_key_order_for_1000_records_across_partitions() {
    let builder = StreamsBuilder::new();
    builder
        .stream("clicks", Utf8, Utf8)
        .select_key(|_click_id, value: &String| {
            value.split(':').next().unwrap_or_default().to_owned()
        })
        .repartition("by-user", Utf8, Utf8)
        .to("clicks-by-user", Utf8, Utf8);
    let mut driver = driver(
        builder.build().unwrap(),
        &[("clicks", 4), ("clicks-by-user", 6)],
    );
    let input = driver.input_topic("clicks", Utf8, Utf8);
    let users = 37;
    for i in 0..1_000 {
        let (user, seq) = (i % users, i / users);
        driver
            .pipe_at(
                &input,
                format!("click-{i}"),
                format!("user-{user}:{seq}"),
                10 * i,
            )
            .unwrap();
    }

    // Every user's clicks were spread over several input partitions...
    let mut input_partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for record in read_utf8(&mut driver, "clicks") {
        let user = record.value.split(':').next().unwrap().to_owned();
        input_partitions
            .entry(user)
            .or_default()
            .insert(record.partition);
    }
    assert_eq!(input_partitions.len(), users as usize);
    assert!(input_partitions.values().all(|p| p.len() > 1));

    // ...went through the internal topic by their new key (4 partitions, as the source)...
    let internal = read_utf8(&mut driver, "test-app-by-user-repartition");
    assert_eq!(internal.len(), 1_000);
    assert_placed_by_key(&internal, 4);

    // ...and come out placed by user, every user's clicks in order, timestamps intact.
    let out = read_utf8(&mut driver, "clicks-by-user");
    assert_eq!(out.len(), 1_000);
    assert_placed_by_key(&out, 6);
    let mut next_seq: BTreeMap<&str, i64> = BTreeMap::new();
    for record in &out {
        let (user, seq) = record.value.split_once(':').unwrap();
        assert_eq!(record.key, user);
        let seq: i64 = seq.parse().unwrap();
        let expected = next_seq.entry(user).or_insert(0);
        assert_eq!(seq, *expected, "clicks of {user} out of order");
        *expected += 1;
        let user_index: i64 = user.trim_start_matches("user-").parse().unwrap();
        assert_eq!(record.timestamp, 10 * (seq * users + user_index));
    }
}

#[test]
fn repartition_partition_count_defaults_to_the_source_topic_count() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .select_key(|_, v: &String| v.clone())
        .repartition("by-value", Utf8, Utf8)
        .to("out", Utf8, Utf8);
    let topology = builder.build().unwrap();
    assert_eq!(
        topology.describe().internal_topics,
        [("${application.id}-by-value-repartition".to_owned(), None)]
    );
    let mut driver = driver(topology, &[("in", 5)]);
    assert_eq!(driver.task_count(), 5 + 5);
    let input = driver.input_topic("in", Utf8, Utf8);
    for i in 0..100 {
        driver
            .pipe(&input, format!("k{i}"), format!("v{i}"))
            .unwrap();
    }
    let internal = read_utf8(&mut driver, "test-app-by-value-repartition");
    assert!(internal.iter().all(|r| (0..5).contains(&r.partition)));
    assert_placed_by_key(&internal, 5);
}

#[test]
fn repartitioned_partitions_overrides_the_internal_topic_count() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .select_key(|_, v: &String| v.clone())
        .repartition_with(Repartitioned::named("wide").partitions(7), Utf8, Utf8)
        .to("out", Utf8, Utf8);
    let topology = builder.build().unwrap();
    let description = topology.describe();
    assert_eq!(
        description.internal_topics,
        [("${application.id}-wide-repartition".to_owned(), Some(7))]
    );
    assert!(
        description
            .to_string()
            .contains("${application.id}-wide-repartition (partitions: 7)")
    );
    let mut driver = driver(topology, &[("in", 3)]);
    assert_eq!(driver.task_count(), 3 + 7);
    let input = driver.input_topic("in", Utf8, Utf8);
    for i in 0..150 {
        driver
            .pipe(&input, format!("k{i}"), format!("v{i}"))
            .unwrap();
    }
    let internal = read_utf8(&mut driver, "test-app-wide-repartition");
    assert_eq!(internal.len(), 150);
    assert!(internal.iter().all(|r| (0..7).contains(&r.partition)));
    assert!(
        internal.iter().any(|r| r.partition >= 3),
        "beyond the source's count"
    );
    assert_placed_by_key(&internal, 7);
    assert_eq!(read_utf8(&mut driver, "out").len(), 150);
}

#[test]
fn chained_repartition_without_count_takes_the_upstream_repartition_count() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .select_key(|_, v: &String| v.clone())
        .repartition_with(Repartitioned::named("first").partitions(5), Utf8, Utf8)
        .select_key(|k: &String, _| format!("{k}-again"))
        .repartition("second", Utf8, Utf8)
        .to("out", Utf8, Utf8);
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().subtopologies.len(), 3);
    let mut driver = driver(topology, &[("in", 2)]);
    assert_eq!(driver.task_count(), 2 + 5 + 5);
    let input = driver.input_topic("in", Utf8, Utf8);
    for i in 0..60 {
        driver
            .pipe(&input, format!("k{i}"), format!("v{i}"))
            .unwrap();
    }
    assert_placed_by_key(&read_utf8(&mut driver, "test-app-first-repartition"), 5);
    let second = read_utf8(&mut driver, "test-app-second-repartition");
    assert!(second.iter().all(|r| r.key.ends_with("-again")));
    assert_placed_by_key(&second, 5);
    assert_eq!(read_utf8(&mut driver, "out").len(), 60);
}

#[test]
fn repartition_topic_is_named_after_the_application_id() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .repartition("rekeyed", Utf8, Utf8)
        .to("out", Utf8, Utf8);
    let mut driver = TestDriver::builder(builder.build().unwrap())
        .application_id("billing")
        .partitions("in", 2)
        .build()
        .unwrap();
    assert_eq!(driver.application_id(), "billing");
    let input = driver.input_topic("in", Utf8, Utf8);
    driver.pipe(&input, "k".into(), "v".into()).unwrap();
    assert_eq!(
        read_utf8(&mut driver, "billing-rekeyed-repartition").len(),
        1
    );
    assert!(read_utf8(&mut driver, "test-app-rekeyed-repartition").is_empty());
}

#[test]
fn co_partitioned_sources_with_different_counts_are_a_topics_error_naming_both() {
    let merged = || {
        let builder = StreamsBuilder::new();
        let left = builder.stream("left-topic", Utf8, Utf8);
        let right = builder.stream("right-topic", Utf8, Utf8);
        left.merge(right).to("out", Utf8, Utf8);
        builder.build().unwrap()
    };
    let error = driver_error(merged(), &[("left-topic", 3), ("right-topic", 4)]);
    let EngineError::Topics(message) = &error else {
        panic!("expected EngineError::Topics, got {error:?}");
    };
    assert!(message.contains("left-topic has 3"), "{message}");
    assert!(message.contains("right-topic has 4"), "{message}");
    // The same counts are fine.
    driver(merged(), &[("left-topic", 4), ("right-topic", 4)]);

    let builder = StreamsBuilder::new();
    builder
        .streams(&["a-topic", "b-topic"], Utf8, Utf8)
        .to("out", Utf8, Utf8);
    let error = driver_error(builder.build().unwrap(), &[("a-topic", 2), ("b-topic", 6)]);
    let EngineError::Topics(message) = &error else {
        panic!("expected EngineError::Topics, got {error:?}");
    };
    assert!(
        message.contains("a-topic") && message.contains("b-topic"),
        "{message}"
    );
}

#[test]
fn sources_in_different_subtopologies_may_have_different_partition_counts() {
    let builder = StreamsBuilder::new();
    builder.stream("small", Utf8, Utf8).to("a", Utf8, Utf8);
    builder.stream("large", Utf8, Utf8).to("b", Utf8, Utf8);
    let driver = driver(builder.build().unwrap(), &[("small", 2), ("large", 6)]);
    assert_eq!(driver.task_count(), 2 + 6);
}

// ---------------------------------------------------------------------------------------------
// Error policies
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_bytes_under_default_policy_are_dead_lettered_with_origin_and_deserialization_class() {
    let builder = StreamsBuilder::new();
    builder
        .stream("payments", Utf8, Json::<u32>::new())
        .map_values(|cents| cents * 2)
        .to("doubled", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("payments", 3)]);
    let input = driver.input_topic("payments", Utf8, Json::<u32>::new());
    driver
        .pipe_record(&input, Some(1), "a".into(), 1, 5)
        .unwrap();
    driver
        .pipe_record(&input, Some(1), "b".into(), 2, 6)
        .unwrap();
    driver
        .pipe_raw(
            "payments",
            Some(1),
            Some(b"c".to_vec()),
            Some(b"{not json".to_vec()),
            77,
        )
        .unwrap();
    driver
        .pipe_raw(
            "payments",
            Some(2),
            Some(vec![0xff, 0xfe]),
            Some(b"3".to_vec()),
            78,
        )
        .unwrap();
    driver.pipe(&input, "d".into(), 4).unwrap();

    let doubled: Vec<(String, u32)> = read_u32(&mut driver, "doubled")
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(doubled, [("a".into(), 2), ("b".into(), 4), ("d".into(), 8)]);

    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].topic, "payments");
    assert_eq!(dead[0].partition, 1);
    assert_eq!(dead[0].offset, 2);
    assert_eq!(dead[0].operator, "payments-source");
    assert_eq!(dead[0].class, "deserialization");
    assert_eq!(dead[0].key.as_deref(), Some(&b"c"[..]));
    assert_eq!(dead[0].value.as_deref(), Some(&b"{not json"[..]));
    assert!(dead[0].message.starts_with("value:"), "{}", dead[0].message);

    assert_eq!((dead[1].partition, dead[1].offset), (2, 0));
    assert_eq!(dead[1].class, "deserialization");
    assert_eq!(dead[1].key.as_deref(), Some(&[0xff, 0xfe][..]));
    assert!(dead[1].message.starts_with("key:"), "{}", dead[1].message);

    // The dead letters are records of the dead-letter topic, with the input's timestamp.
    let topic = driver.output_topic("test-app-dead-letters", RawBytes, RawBytes);
    let stored = driver.read_records(&topic).unwrap();
    assert_eq!(
        stored.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
        [77, 78]
    );
}

#[test]
fn panicking_closure_is_caught_as_panic_class_and_later_records_still_flow() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Json::<u32>::new())
        .map_values(|n: u32| {
            assert!(n != 13, "unlucky number {n}");
            n + 1
        })
        .name("risky")
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 3), ("out", 3)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    for n in [12u32, 13, 14, 13, 15] {
        driver.pipe(&input, format!("k{n}"), n).unwrap();
    }
    let out: Vec<u32> = read_u32(&mut driver, "out")
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [13, 15, 16]);
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 2);
    for letter in &dead {
        assert_eq!(letter.operator, "risky");
        assert_eq!(letter.class, "panic");
        assert_eq!(letter.topic, "in");
        assert_eq!(letter.partition, part("k13", 3));
        assert!(
            letter.message.contains("unlucky number 13"),
            "{}",
            letter.message
        );
    }
    assert_eq!((dead[0].offset, dead[1].offset), (0, 1));
}

#[test]
fn skip_policy_drops_the_failing_record_and_lists_it_in_skipped() {
    let builder = StreamsBuilder::new();
    builder.default_error_policy(ErrorPolicy::Skip);
    builder
        .stream("in", Utf8, Utf8)
        .try_map_values(|v: String| v.parse::<u32>())
        .name("parse")
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 2)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    for value in ["1", "two", "3"] {
        driver.pipe(&input, value.into(), value.into()).unwrap();
    }
    driver
        .pipe_raw("in", None, Some(b"k".to_vec()), Some(vec![0xc3]), 0)
        .unwrap();
    let out: Vec<u32> = read_u32(&mut driver, "out")
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [1, 3]);
    assert!(driver.dead_letters().is_empty());
    let skipped = driver.skipped();
    assert_eq!(skipped.len(), 2);
    assert_eq!(skipped[0].operator, "parse");
    assert_eq!(skipped[0].class, ErrorClass::Processing);
    assert_eq!(skipped[1].operator, "in-source");
    assert_eq!(skipped[1].class, ErrorClass::Deserialization);
}

#[test]
fn fail_policy_returns_a_processing_error_naming_operator_and_class() {
    let builder = StreamsBuilder::new();
    builder.default_error_policy(ErrorPolicy::Fail);
    builder
        .stream("in", Utf8, Utf8)
        .try_map_values(|v: String| v.parse::<u32>())
        .name("parse")
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 2)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    driver.pipe(&input, "a".into(), "1".into()).unwrap();
    let error = driver.pipe(&input, "b".into(), "bee".into()).unwrap_err();
    let EngineError::Processing(error) = error else {
        panic!("expected EngineError::Processing, got {error:?}");
    };
    assert_eq!(error.operator, "parse");
    assert_eq!(error.class, ErrorClass::Processing);
    assert!(driver.dead_letters().is_empty());
    assert!(driver.skipped().is_empty());
    assert_eq!(read_u32(&mut driver, "out").len(), 1);

    let error = driver
        .pipe_raw("in", None, Some(b"c".to_vec()), Some(vec![0xff]), 0)
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Processing(e) if e.class == ErrorClass::Deserialization
            && e.operator == "in-source"),
        "{error:?}"
    );
}

#[test]
fn operator_on_error_overrides_the_topology_default_for_that_operator_only() {
    let builder = StreamsBuilder::new();
    builder.default_error_policy(ErrorPolicy::Fail);
    builder
        .stream("in", Utf8, Utf8)
        .try_map_values(|v: String| v.parse::<u32>())
        .name("lenient")
        .on_error(ErrorPolicy::DeadLetter)
        .try_map_values(|n: u32| 100u32.checked_div(n).ok_or("zero"))
        .name("strict")
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 3)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    driver
        .pipe(&input, "a".into(), "not a number".into())
        .unwrap();
    driver.pipe(&input, "b".into(), "4".into()).unwrap();
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].operator, "lenient");
    let error = driver.pipe(&input, "c".into(), "0".into()).unwrap_err();
    assert!(
        matches!(&error, EngineError::Processing(e) if e.operator == "strict"),
        "{error:?}"
    );
    assert_eq!(
        read_u32(&mut driver, "out")
            .into_iter()
            .map(|r| r.value)
            .collect::<Vec<_>>(),
        [25]
    );
}

#[test]
fn source_on_error_skip_overrides_default_dead_letter_for_malformed_bytes() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Json::<u32>::new())
        .on_error(ErrorPolicy::Skip)
        .try_map_values(|n: u32| if n > 10 { Err("too big") } else { Ok(n) })
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 2)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    driver
        .pipe_raw("in", None, Some(b"k".to_vec()), Some(b"oops".to_vec()), 0)
        .unwrap();
    driver.pipe(&input, "k".into(), 11).unwrap();
    driver.pipe(&input, "k".into(), 9).unwrap();
    assert_eq!(driver.skipped().len(), 1);
    assert_eq!(driver.skipped()[0].operator, "in-source");
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 1, "the map's policy is still the default");
    assert_eq!(dead[0].operator, "try-map-values-1");
    assert_eq!(read_u32(&mut driver, "out").len(), 1);
}

#[test]
fn failing_record_discards_partial_outputs_of_other_fan_out_branches() {
    let builder = StreamsBuilder::new();
    let orders = builder.stream("orders", Utf8, Utf8);
    orders.clone().to("audit", Utf8, Utf8);
    orders
        .try_map_values(|v: String| v.parse::<u32>())
        .name("parse")
        .to("amounts", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("orders", 3)]);
    let input = driver.input_topic("orders", Utf8, Utf8);
    driver.pipe(&input, "o1".into(), "10".into()).unwrap();
    driver.pipe(&input, "o2".into(), "ten".into()).unwrap();
    driver.pipe(&input, "o3".into(), "30".into()).unwrap();
    let audit: Vec<String> = read_utf8(&mut driver, "audit")
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(
        audit,
        ["o1", "o3"],
        "the failing order's audit copy is discarded"
    );
    assert_eq!(read_u32(&mut driver, "amounts").len(), 2);
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].operator, "parse");
    assert_eq!(dead[0].value.as_deref(), Some(&b"ten"[..]));
}

#[test]
fn failing_branch_stops_later_fan_out_branches_from_seeing_the_record() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let builder = StreamsBuilder::new();
    let orders = builder.stream("orders", Utf8, Utf8);
    orders
        .clone()
        .try_map_values(|v: String| v.parse::<u32>())
        .name("parse")
        .to("amounts", Utf8, Json::<u32>::new());
    orders
        .peek(move |key, _| log.lock().unwrap().push(key.clone()))
        .to("audit", Utf8, Utf8);
    let mut driver = driver(builder.build().unwrap(), &[("orders", 3)]);
    let input = driver.input_topic("orders", Utf8, Utf8);
    driver.pipe(&input, "o1".into(), "10".into()).unwrap();
    driver.pipe(&input, "o2".into(), "ten".into()).unwrap();
    driver.pipe(&input, "o3".into(), "30".into()).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["o1", "o3"]);
    assert_eq!(read_utf8(&mut driver, "audit").len(), 2);
    assert_eq!(driver.dead_letters().len(), 1);
}

#[test]
fn sink_serialization_failure_is_dead_lettered_as_serialization_by_the_sink() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Json::<u32>::new())
        .to("out", Utf8, RefusesThirteen);
    let mut driver = driver(builder.build().unwrap(), &[("in", 2)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    for n in [12u32, 13, 14] {
        driver.pipe(&input, format!("k{n}"), n).unwrap();
    }
    let out: Vec<u32> = read_u32(&mut driver, "out")
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(out, [12, 14]);
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].operator, "out-sink");
    assert_eq!(dead[0].class, "serialization");
    assert_eq!(dead[0].value.as_deref(), Some(&b"13"[..]));
}

#[test]
fn failure_after_a_repartition_is_dead_lettered_from_the_internal_topic() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .select_key(|_, v: &String| format!("user-{}", v.len()))
        .repartition("by-user", Utf8, Utf8)
        .try_map_values(|v: String| v.parse::<u32>())
        .name("parse")
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 2)]);
    let input = driver.input_topic("in", Utf8, Utf8);
    driver.pipe(&input, "a".into(), "12".into()).unwrap();
    driver.pipe(&input, "b".into(), "xyz".into()).unwrap();
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].topic, "test-app-by-user-repartition");
    assert_eq!(dead[0].partition, part("user-3", 2));
    assert_eq!(dead[0].key.as_deref(), Some(&b"user-3"[..]));
    assert_eq!(dead[0].operator, "parse");
    assert_eq!(read_u32(&mut driver, "out").len(), 1);
}

#[test]
fn dead_letter_topic_setting_redirects_dead_letters() {
    let builder = StreamsBuilder::new();
    builder.dead_letter_topic("quarantine");
    builder
        .stream("in", Utf8, Json::<u32>::new())
        .to("out", Utf8, Json::<u32>::new());
    let topology = builder.build().unwrap();
    assert_eq!(topology.describe().dead_letter_topic, "quarantine");
    let mut driver = driver(topology, &[("in", 2)]);
    driver
        .pipe_raw("in", Some(0), Some(b"k".to_vec()), Some(b"x".to_vec()), 0)
        .unwrap();
    assert_eq!(driver.dead_letters().len(), 1);
    let quarantine = driver.output_topic("quarantine", RawBytes, RawBytes);
    assert_eq!(driver.read_records(&quarantine).unwrap().len(), 1);
    let default = driver.output_topic("test-app-dead-letters", RawBytes, RawBytes);
    assert!(driver.read_records(&default).unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Builder and driver errors
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_operator_names_make_build_return_an_error() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .map_values(|v: String| v)
        .name("same")
        .filter(|_, _| true)
        .name("same")
        .to("out", Utf8, Utf8);
    let message = build_error(builder);
    assert!(message.contains("\"same\""), "{message}");

    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .map_values(|v: String| v)
        .name("in-source")
        .to("out", Utf8, Utf8);
    assert!(build_error(builder).contains("\"in-source\""));

    let builder = StreamsBuilder::new();
    let mut branches = builder
        .stream("in", Utf8, Utf8)
        .split("s")
        .branch("a", |_, _| true)
        .branch("a", |_, _| false)
        .no_default_branch();
    branches.take("a").unwrap().to("out", Utf8, Utf8);
    assert!(build_error(builder).contains("\"s-a\""));
}

#[test]
fn invalid_topic_names_make_build_return_an_error_naming_them() {
    let too_long = "t".repeat(250);
    for bad in [
        "",
        ".",
        "..",
        "has space",
        "slash/topic",
        "ümlaut",
        too_long.as_str(),
    ] {
        let builder = StreamsBuilder::new();
        builder.stream(bad, Utf8, Utf8).to("out", Utf8, Utf8);
        let message = build_error(builder);
        assert!(
            message.contains(&format!("{bad:?}")),
            "source {bad:?}: {message}"
        );

        let builder = StreamsBuilder::new();
        builder.stream("in", Utf8, Utf8).to(bad, Utf8, Utf8);
        let message = build_error(builder);
        assert!(
            message.contains(&format!("{bad:?}")),
            "sink {bad:?}: {message}"
        );
    }

    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .repartition("no spaces please", Utf8, Utf8)
        .to("out", Utf8, Utf8);
    assert!(build_error(builder).contains("\"no spaces please\""));

    let builder = StreamsBuilder::new();
    builder.dead_letter_topic("dead letters");
    builder.stream("in", Utf8, Utf8).to("out", Utf8, Utf8);
    assert!(build_error(builder).contains("\"dead letters\""));

    // The longest legal name is fine.
    let builder = StreamsBuilder::new();
    builder
        .stream(&"t".repeat(249), Utf8, Utf8)
        .to("Out_1.x-y", Utf8, Utf8);
    builder.build().unwrap();
}

#[test]
fn reading_the_same_topic_twice_makes_build_return_an_error() {
    // Twice with the default source name.
    let builder = StreamsBuilder::new();
    builder.stream("orders", Utf8, Utf8).to("a", Utf8, Utf8);
    builder.stream("orders", Utf8, Utf8).to("b", Utf8, Utf8);
    assert!(build_error(builder).contains("orders"));

    // Twice under different source names.
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .name("first")
        .to("a", Utf8, Utf8);
    builder
        .stream("orders", Utf8, Utf8)
        .name("second")
        .to("b", Utf8, Utf8);
    let message = build_error(builder);
    assert!(
        message.contains("topic orders is read by two sources"),
        "{message}"
    );
    assert!(
        message.contains("first") && message.contains("second"),
        "{message}"
    );

    // Twice in one multi-topic source.
    let builder = StreamsBuilder::new();
    builder
        .streams(&["orders", "orders"], Utf8, Utf8)
        .to("a", Utf8, Utf8);
    assert!(build_error(builder).contains("orders"));
}

#[test]
fn driver_rejects_partition_counts_below_one_with_a_config_error() {
    let topology = || {
        let builder = StreamsBuilder::new();
        builder.stream("in", Utf8, Utf8).to("out", Utf8, Utf8);
        builder.build().unwrap()
    };
    let error = driver_error(topology(), &[("in", 0)]);
    assert!(
        matches!(&error, EngineError::Config { key, .. } if key == "partitions(in)"),
        "{error:?}"
    );
    let Err(error) = TestDriver::builder(topology())
        .default_partitions(0)
        .build()
    else {
        panic!("default_partitions(0) must not build");
    };
    assert!(
        matches!(&error, EngineError::Config { key, .. } if key == "default_partitions"),
        "{error:?}"
    );

    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .repartition_with(Repartitioned::named("none").partitions(0), Utf8, Utf8)
        .to("out", Utf8, Utf8);
    let error = driver_error(builder.build().unwrap(), &[]);
    assert!(
        matches!(&error, EngineError::Topology(m) if m.contains("none-repartition")),
        "{error:?}"
    );
}

#[test]
fn piping_into_an_unread_topic_or_missing_partition_is_a_topics_error() {
    let builder = StreamsBuilder::new();
    builder.stream("in", Utf8, Utf8).to("out", Utf8, Utf8);
    let mut driver = driver(builder.build().unwrap(), &[("in", 3)]);
    let error = driver
        .pipe_raw("elsewhere", None, None, Some(b"v".to_vec()), 0)
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Topics(m) if m.contains("elsewhere")),
        "{error:?}"
    );
    let input = driver.input_topic("in", Utf8, Utf8);
    let error = driver
        .pipe_record(&input, Some(3), "k".into(), "v".into(), 0)
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::Topics(m) if m.contains("no partition 3")),
        "{error:?}"
    );
    driver
        .pipe_record(&input, Some(2), "k".into(), "v".into(), 0)
        .unwrap();
    let out = read_utf8(&mut driver, "in");
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].partition, 2,
        "an explicit partition wins over the key's"
    );
}

#[test]
fn flat_map_stops_pulling_items_after_a_downstream_failure() {
    let pulled = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&pulled);
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Json::<u32>::new())
        .flat_map(move |key: String, n: u32| {
            let log = Arc::clone(&log);
            (0..n).map(move |i| {
                log.lock().unwrap().push(i);
                (key.clone(), i)
            })
        })
        .try_map_values(|i: u32| if i == 1 { Err("one") } else { Ok(i) })
        .name("no-ones")
        .to("out", Utf8, Json::<u32>::new());
    let mut driver = driver(builder.build().unwrap(), &[("in", 2)]);
    let input = driver.input_topic("in", Utf8, Json::<u32>::new());
    driver.pipe(&input, "k".into(), 5).unwrap();
    assert_eq!(
        *pulled.lock().unwrap(),
        [0, 1],
        "items after the failing one are not made"
    );
    assert!(read_u32(&mut driver, "out").is_empty());
    let dead = driver.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].operator, "no-ones");
}

/// Every operator counts the records into and out of it: a filter that
/// keeps half its input reports N in and N/2 out, and its sink N/2 in.
#[test]
fn operators_count_records_in_and_out() {
    let builder = StreamsBuilder::new();
    builder
        .stream("numbers", Utf8, Json::<u32>::new())
        .filter(|_, n| n % 2 == 0)
        .name("evens")
        .to("even-numbers", Utf8, Json::<u32>::new());
    let mut driver = TestDriver::builder(builder.build().unwrap())
        .default_partitions(3)
        .build()
        .unwrap();
    let input = driver.input_topic("numbers", Utf8, Json::<u32>::new());
    for n in 0..100u32 {
        driver.pipe(&input, format!("k{n}"), n).unwrap();
    }
    assert_eq!(driver.operator_records("numbers-source"), Some((100, 100)));
    assert_eq!(driver.operator_records("evens"), Some((100, 50)));
    assert_eq!(driver.operator_records("even-numbers-sink"), Some((50, 0)));
    assert_eq!(driver.operator_records("no-such-operator"), None);
}
