//! Stateful processing against a real broker: stores are restored from
//! their changelogs — only the tail after a clean stop, all of it when the
//! local state is gone or damaged — and the counts come out the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use engine::serdes::{U64, Utf8};
use engine::{StreamsBuilder, StreamsConfig, Topology};

const PARTITIONS: i32 = 4;
const KEYS: u64 = 1_000;

fn count_topology(input: &str, output: &str) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Utf8, Utf8)
        .group_by_key(Utf8, Utf8)
        .count("counts")
        .to_stream()
        .to(output, Utf8, U64);
    builder.build().unwrap()
}

fn state_config(app: &str, state_dir: &Path) -> StreamsConfig {
    let mut config = config(app);
    config.state_dir = state_dir.to_path_buf();
    if let Ok(debug) = std::env::var("KAFKA_DEBUG") {
        config.client.insert("debug".into(), debug);
    }
    config
}

/// `rounds` records per key, keys `key-0 … key-999`.
fn records(rounds: u64) -> Vec<(String, Vec<u8>)> {
    (0..rounds * KEYS)
        .map(|i| (format!("key-{}", i % KEYS), b"order".to_vec()))
        .collect()
}

/// Runs the count topology until every input offset is committed, stops it
/// cleanly and returns how many changelog records it restored.
async fn run_to_completion(app: &str, input: &str, output: &str, state_dir: &Path) -> u64 {
    let running = Running::start(count_topology(input, output), state_config(app, state_dir));
    wait_for(
        "every input to be committed",
        Duration::from_secs(120),
        || committed(app, input) == end_offsets(input),
    )
    .await;
    let restored = counter(&running.registry, "engine_restored_records_total");
    running.stop().await;
    restored
}

/// The latest count written for each key.
async fn latest_counts(output: &str) -> HashMap<String, u64> {
    let total = topic_size(output) as usize;
    let mut latest = HashMap::new();
    for (_, _, key, value, _) in read_records(output, total).await {
        let count = u64::from_be_bytes(value.try_into().unwrap());
        let entry = latest.entry(key).or_insert(0);
        *entry = count.max(*entry);
    }
    latest
}

fn assert_counts(counts: &HashMap<String, u64>, expected: u64) {
    assert_eq!(counts.len() as u64, KEYS);
    let wrong: Vec<_> = counts
        .iter()
        .filter(|(_, c)| **c != expected)
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "counts should all be {expected}: {wrong:?}"
    );
}

/// Count per key over 100,000 records; a clean stop and restart replays
/// nothing (only the changelog's tail, which is empty); with the state
/// directory deleted the restart replays the whole changelog; the counts
/// go on correctly both times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replays_only_the_tail_after_a_clean_stop_and_everything_without_state() {
    let kafka = testkit::kafka();
    let (input, output, app) = (
        testkit::unique_name("count-in"),
        testkit::unique_name("count-out"),
        testkit::unique_name("count-app"),
    );
    kafka.create_topic(&input, PARTITIONS).await;
    kafka.create_topic(&output, PARTITIONS).await;
    let state_dir = tempfile::tempdir().unwrap();
    let changelog = format!("{app}-counts-changelog");

    produce_raw(&input, records(100)).await;
    let restored = run_to_completion(&app, &input, &output, state_dir.path()).await;
    assert_eq!(restored, 0, "a first run has nothing to restore");
    assert_eq!(
        topic_size(&changelog),
        100_000,
        "every update went to the changelog"
    );
    assert_counts(&latest_counts(&output).await, 100);

    produce_raw(&input, records(1)).await;
    let restored = run_to_completion(&app, &input, &output, state_dir.path()).await;
    assert_eq!(
        restored, 0,
        "after a clean stop the checkpoint covers the whole changelog"
    );
    assert_counts(&latest_counts(&output).await, 101);

    std::fs::remove_dir_all(state_dir.path().join(&app)).unwrap();
    let changelog_size = topic_size(&changelog) as u64;
    produce_raw(&input, records(1)).await;
    let restored = run_to_completion(&app, &input, &output, state_dir.path()).await;
    assert_eq!(
        restored, changelog_size,
        "without local state the whole changelog is replayed"
    );
    assert_counts(&latest_counts(&output).await, 102);
}

/// The task directories under the application's state directory.
fn task_dirs(state_dir: &Path, app: &str) -> Vec<PathBuf> {
    std::fs::read_dir(state_dir.join(app))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect()
}

/// The largest regular file under `dir`.
fn largest_file(dir: &Path) -> PathBuf {
    let mut largest: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let size = path.metadata().unwrap().len();
                if largest.as_ref().is_none_or(|(s, _)| size > *s) {
                    largest = Some((size, path));
                }
            }
        }
    }
    largest.unwrap().1
}

/// Damaged sled files between runs (one task's file truncated, another's
/// bytes flipped) make the task rebuild from the changelog: no crash loop,
/// and the counts are right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_local_state_is_rebuilt_from_the_changelog() {
    let kafka = testkit::kafka();
    let (input, output, app) = (
        testkit::unique_name("damage-in"),
        testkit::unique_name("damage-out"),
        testkit::unique_name("damage-app"),
    );
    kafka.create_topic(&input, PARTITIONS).await;
    kafka.create_topic(&output, PARTITIONS).await;
    let state_dir = tempfile::tempdir().unwrap();

    produce_raw(&input, records(20)).await;
    run_to_completion(&app, &input, &output, state_dir.path()).await;
    assert_counts(&latest_counts(&output).await, 20);

    let dirs = task_dirs(state_dir.path(), &app);
    assert_eq!(
        dirs.len(),
        PARTITIONS as usize,
        "one state directory per task"
    );
    // Truncate one task's largest file, flip bytes in another's.
    let truncated = largest_file(&dirs[0]);
    let length = truncated.metadata().unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    let flipped = largest_file(&dirs[1]);
    let mut bytes = std::fs::read(&flipped).unwrap();
    let (middle, len) = (bytes.len() / 2, bytes.len());
    for byte in &mut bytes[middle..(middle + 64).min(len)] {
        *byte = !*byte;
    }
    std::fs::write(&flipped, bytes).unwrap();

    produce_raw(&input, records(1)).await;
    run_to_completion(&app, &input, &output, state_dir.path()).await;
    assert_counts(&latest_counts(&output).await, 21);
}

/// Interactive queries read a running application's counts by key and by
/// range, say which partition holds a key and that it is not restoring,
/// and refuse once the application has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_queries_read_the_running_applications_stores() {
    use engine::queries::QueryError;

    let kafka = testkit::kafka();
    let (input, output, app) = (
        testkit::unique_name("query-in"),
        testkit::unique_name("query-out"),
        testkit::unique_name("query-app"),
    );
    kafka.create_topic(&input, PARTITIONS).await;
    kafka.create_topic(&output, PARTITIONS).await;
    let state_dir = tempfile::tempdir().unwrap();
    produce_raw(&input, records(10)).await;

    let running = Running::start(
        count_topology(&input, &output),
        state_config(&app, state_dir.path()),
    );
    wait_for(
        "every input to be committed",
        Duration::from_secs(120),
        || committed(&app, &input) == end_offsets(&input),
    )
    .await;
    let queries = running.queries.clone();
    for i in [0, 1, 499, 999] {
        let key = format!("key-{i}");
        assert_eq!(
            queries.get("counts", &key, &Utf8, &U64).unwrap(),
            Some(10),
            "{key}"
        );
        let partition = queries.partition_of("counts", &key, &Utf8).unwrap();
        assert_eq!(
            partition,
            engine::partitioner::partition_for_key(key.as_bytes(), PARTITIONS)
        );
    }
    assert_eq!(
        queries
            .get("counts", &"no-such-key".to_owned(), &Utf8, &U64)
            .unwrap(),
        None
    );
    let metadata = queries.metadata("counts").unwrap();
    assert_eq!(metadata.partitions, PARTITIONS);
    assert_eq!(metadata.hosted.len(), PARTITIONS as usize);
    assert!(metadata.hosted.values().all(|restoring| !restoring));
    let all = queries.range("counts", None, None, &Utf8, &U64).unwrap();
    assert_eq!(all.len() as u64, KEYS);
    assert!(all.iter().all(|(_, count)| *count == 10));
    assert!(matches!(
        queries.get("nope", &"key-1".to_owned(), &Utf8, &U64),
        Err(QueryError::UnknownStore(_))
    ));
    running.stop().await;
    assert!(matches!(
        queries.get("counts", &"key-1".to_owned(), &Utf8, &U64),
        Err(QueryError::NotHosted { .. })
    ));
}

/// A restore writes only the last change of each key among the changelog
/// records it reads at once; deletes must keep their place in that order.
/// A table of 300 keys, each updated ten times, a third of them deleted at
/// the end and a third deleted and then set again, is rebuilt without local
/// state exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restore_keeps_the_last_change_of_each_key_deletes_included() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let kafka = testkit::kafka();
    let (input, app) = (
        testkit::unique_name("prices-in"),
        testkit::unique_name("prices-app"),
    );
    kafka.create_topic(&input, PARTITIONS).await;
    let state_dir = tempfile::tempdir().unwrap();
    let topology = || {
        let builder = StreamsBuilder::new();
        builder.table(&input, Utf8, Utf8, "prices");
        builder.build().unwrap()
    };

    // Every key's changes go to one partition, in order.
    let producer: FutureProducer = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..12 {
        for key in 0..300 {
            let name = format!("drink-{key:03}");
            let value = match (round, key % 3) {
                (10, 0 | 1) => None,
                (11, 0) => continue,
                _ => Some(format!("{name}@{round}")),
            };
            let mut record = FutureRecord::<String, String>::to(&input).key(&name);
            if let Some(value) = &value {
                record = record.payload(value);
            }
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(error, _)| error)
                .unwrap();
            match value {
                Some(value) => expected.insert(name, value),
                None => expected.remove(&name),
            };
        }
    }
    assert_eq!(expected.len(), 200, "a third of the keys end deleted");

    let running = Running::start(topology(), state_config(&app, state_dir.path()));
    wait_for(
        "every input to be committed",
        Duration::from_secs(120),
        || committed(&app, &input) == end_offsets(&input),
    )
    .await;
    running.stop().await;
    let changelog_size = topic_size(&format!("{app}-prices-changelog")) as u64;
    assert_eq!(changelog_size, 12 * 300 - 100, "every change was logged");

    std::fs::remove_dir_all(state_dir.path().join(&app)).unwrap();
    let running = Running::start(topology(), state_config(&app, state_dir.path()));
    let queries = running.queries.clone();
    wait_for("the restore to finish", Duration::from_secs(120), || {
        queries.metadata("prices").is_some_and(|metadata| {
            metadata.hosted.len() == PARTITIONS as usize
                && metadata.hosted.values().all(|restoring| !restoring)
        })
    })
    .await;
    assert_eq!(
        counter(&running.registry, "engine_restored_records_total"),
        changelog_size
    );
    let restored: std::collections::BTreeMap<String, String> = queries
        .range("prices", None, None, &Utf8, &Utf8)
        .unwrap()
        .into_iter()
        .collect();
    let wrong: Vec<_> = expected
        .keys()
        .chain(restored.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|key| restored.get(*key) != expected.get(*key))
        .take(5)
        .map(|key| (key, restored.get(key), expected.get(key)))
        .collect();
    assert!(wrong.is_empty(), "(key, restored, expected): {wrong:?}");
    assert_eq!(restored.len(), expected.len());
    running.stop().await;
}
