//! The runtime against a real Kafka broker: per-key order through a
//! repartition, at-least-once across a SIGKILL, scale-out and takeover,
//! poison pills, and a graceful SIGTERM that leaves nothing to reprocess.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use engine::serdes::{Json, Utf8};
use engine::{Cluster, KafkaStreams, StreamsBuilder, StreamsConfig, Topology};
use rdkafka::consumer::Consumer;
use serde::{Deserialize, Serialize};

mod common;
use common::*;

const PARTITIONS: i32 = 6;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Item {
    key: String,
    seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Enriched {
    key: String,
    seq: u64,
    group: String,
}

/// input (key, Item) → enrich → output, 1:1; with an optional busy-wait per
/// record so a test can catch the pipeline mid-stream.
fn enrich_topology(input: &str, output: &str, work: Duration) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Utf8, Json::<Item>::new())
        .peek(move |_, _| busy_work(work))
        .map_values(|item: Item| Enriched {
            group: format!("g{}", item.seq % 7),
            key: item.key,
            seq: item.seq,
        })
        .to(output, Utf8, Json::<Enriched>::new());
    builder.build().unwrap()
}

/// Produces `count` items keyed `k{i % keys}` with per-key sequence numbers,
/// in order; returns the delivery (partition, offset) of each.
async fn produce_items(topic: &str, count: u64, keys: u64) -> Vec<(i32, i64)> {
    let records = (0..count)
        .map(|i| {
            let key = format!("k{}", i % keys);
            let value = serde_json::to_vec(&Item {
                key: key.clone(),
                seq: i / keys,
            })
            .unwrap();
            (key, value)
        })
        .collect();
    produce_raw(topic, records).await
}

/// 100,000 records over 6 partitions, re-keyed with `select_key` and moved
/// through a repartition topic: every record arrives once, and the records
/// of each original key keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_is_kept_through_select_key_and_repartition() {
    let (input, output, app) = fresh_pipeline("order").await;
    const RECORDS: u64 = 100_000;
    const KEYS: u64 = 1_000;
    produce_items(&input, RECORDS, KEYS).await;

    let builder = StreamsBuilder::new();
    builder
        .stream(&input, Utf8, Json::<Item>::new())
        .select_key(|key: &String, _| {
            format!(
                "group-{}",
                key.trim_start_matches('k').parse::<u64>().unwrap() % 97
            )
        })
        .repartition("by-group", Utf8, Json::<Item>::new())
        .to(&output, Utf8, Json::<Item>::new());
    let running = Running::start(builder.build().unwrap(), config(&app));

    let records = read_records(&output, RECORDS as usize).await;
    running.stop().await;
    let repartition = format!("{app}-by-group-repartition");
    assert_eq!(
        end_offsets(&repartition).len(),
        PARTITIONS as usize,
        "repartition topic has 6 partitions"
    );

    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut seen = 0u64;
    let mut partition_of_group: HashMap<String, i32> = HashMap::new();
    let mut by_partition: BTreeMap<i32, Vec<&Read>> = BTreeMap::new();
    for record in &records {
        by_partition.entry(record.0).or_default().push(record);
    }
    for records in by_partition.values_mut() {
        records.sort_by_key(|r| r.1);
        for (partition, _, group, value, _) in records.iter() {
            let item: Item = serde_json::from_slice(value).unwrap();
            let first = *partition_of_group
                .entry(group.clone())
                .or_insert(*partition);
            assert_eq!(first, *partition, "all of {group} lands in one partition");
            if let Some(previous) = last_seq.insert(item.key.clone(), item.seq) {
                assert_eq!(
                    item.seq,
                    previous + 1,
                    "key {} out of order or duplicated",
                    item.key
                );
            } else {
                assert_eq!(item.seq, 0, "key {} starts at its first record", item.key);
            }
            seen += 1;
        }
    }
    assert_eq!(seen, RECORDS);
    assert_eq!(
        topic_size(&output),
        RECORDS as i64,
        "no duplicates were written"
    );
}

/// Entry point of the child process the crash and shutdown tests run; not
/// a test by itself.
#[test]
#[ignore = "runs only as a child process of other tests"]
fn child_pipeline() {
    let env = |key: &str| std::env::var(key).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config =
            StreamsConfig::new(&env("CHILD_APP")).bootstrap_servers(Some(&env("CHILD_BOOTSTRAP")));
        config.commit_interval_ms = Some(200);
        config.session_timeout_ms = 6_000;
        let work = Duration::from_micros(env("CHILD_WORK_US").parse().unwrap());
        let topology = enrich_topology(&env("CHILD_INPUT"), &env("CHILD_OUTPUT"), work);
        let cluster = Cluster::kafka(&env("CHILD_BOOTSTRAP"));
        let streams = KafkaStreams::new(topology, config, cluster).unwrap();
        streams.run(engine::shutdown::signal()).await.unwrap();
    });
}

fn spawn_child(app: &str, input: &str, output: &str, work_us: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_pipeline",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHILD_APP", app)
        .env("CHILD_BOOTSTRAP", testkit::kafka().bootstrap_servers())
        .env("CHILD_INPUT", input)
        .env("CHILD_OUTPUT", output)
        .env("CHILD_WORK_US", work_us.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Fresh input and output topics (six partitions) and a fresh application id.
async fn fresh_pipeline(prefix: &str) -> (String, String, String) {
    let kafka = testkit::kafka();
    let (input, output, app) = (
        testkit::unique_name(&format!("{prefix}-in")),
        testkit::unique_name(&format!("{prefix}-out")),
        testkit::unique_name(&format!("{prefix}-app")),
    );
    kafka.create_topic(&input, PARTITIONS).await;
    kafka.create_topic(&output, PARTITIONS).await;
    (input, output, app)
}

/// A child process running the pipeline, returned once it has written
/// outputs. 200 µs of work per record (~6 s for 30,000) keeps it mid-stream.
async fn child_mid_stream(app: &str, input: &str, output: &str) -> Child {
    let child = spawn_child(app, input, output, 200);
    wait_for(
        "the child to write outputs",
        Duration::from_secs(60),
        || topic_size(output) >= 3_000,
    )
    .await;
    child
}

/// Runs the pipeline in process, without artificial work, until every
/// input is committed, then stops it.
async fn finish_in_process(app: &str, input: &str, output: &str) {
    let running = Running::start(enrich_topology(input, output, Duration::ZERO), config(app));
    wait_for(
        "every input to be committed",
        Duration::from_secs(90),
        || committed(app, input) == end_offsets(input),
    )
    .await;
    running.stop().await;
}

/// Every input's output, keyed by (original key, seq); values count copies.
fn outputs_by_item(records: &[Read]) -> HashMap<(String, u64), u32> {
    let mut copies = HashMap::new();
    for (_, _, _, value, _) in records {
        let enriched: Enriched = serde_json::from_slice(value).unwrap();
        *copies.entry((enriched.key, enriched.seq)).or_insert(0) += 1;
    }
    copies
}

/// A child process running a topology is killed with SIGKILL while it is
/// still consuming; after a restart every input has its output (duplicates
/// are allowed and counted, none is missing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_survives_sigkill_mid_stream() {
    let (input, output, app) = fresh_pipeline("crash").await;
    const RECORDS: u64 = 30_000;
    produce_items(&input, RECORDS, 500).await;

    let mut child = child_mid_stream(&app, &input, &output).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let written_before_kill = topic_size(&output);
    assert!(
        written_before_kill < RECORDS as i64,
        "the kill landed mid-stream ({written_before_kill} of {RECORDS} outputs written)"
    );
    let committed_before: i64 = committed(&app, &input).iter().sum();
    assert!(
        committed_before < RECORDS as i64,
        "offsets were not all committed at the kill"
    );

    // Restart (in process) with no artificial work and let it finish.
    finish_in_process(&app, &input, &output).await;

    let total = topic_size(&output) as usize;
    let copies = outputs_by_item(&read_records(&output, total).await);
    let missing = (0..RECORDS)
        .filter(|i| !copies.contains_key(&(format!("k{}", i % 500), i / 500)))
        .count();
    let duplicates: u32 = copies.values().map(|n| n - 1).sum();
    eprintln!(
        "crash test: {written_before_kill} outputs before SIGKILL, {committed_before} offsets committed, \
         {duplicates} duplicates after restart"
    );
    assert_eq!(missing, 0, "no input lost its output");
    assert_eq!(copies.len() as u64, RECORDS);
}

/// SIGTERM mid-stream: the child drains, commits exactly what it processed
/// and exits 0; a restart then finishes without reprocessing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_sigterm_commits_everything_processed() {
    let (input, output, app) = fresh_pipeline("term").await;
    const RECORDS: u64 = 30_000;
    produce_items(&input, RECORDS, 500).await;

    let mut child = child_mid_stream(&app, &input, &output).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "the child exits cleanly after SIGTERM: {exit:?}"
    );
    let written = topic_size(&output);
    let committed_at_exit: i64 = committed(&app, &input).iter().sum();
    assert!(
        written < RECORDS as i64,
        "SIGTERM landed mid-stream ({written} of {RECORDS})"
    );
    assert_eq!(
        committed_at_exit, written,
        "every processed record was committed, and nothing more"
    );

    finish_in_process(&app, &input, &output).await;
    assert_eq!(
        topic_size(&output),
        RECORDS as i64,
        "nothing was processed twice"
    );
}

/// Two runtimes with one application id split six partitions 3/3; when one
/// stops, the other takes its partitions over from the committed offsets
/// and finishes every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_splits_partitions_and_survivor_takes_over() {
    let (input, output, app) = fresh_pipeline("scale").await;

    let first = Running::start(
        enrich_topology(&input, &output, Duration::ZERO),
        config(&app),
    );
    let second = Running::start(
        enrich_topology(&input, &output, Duration::ZERO),
        config(&app),
    );
    wait_for(
        "both members to hold three partitions",
        Duration::from_secs(60),
        || {
            first.gauge("engine_assigned_partitions") == 3
                && second.gauge("engine_assigned_partitions") == 3
        },
    )
    .await;
    produce_items(&input, 20_000, 300).await;
    wait_for(
        "the first half to be committed",
        Duration::from_secs(60),
        || committed(&app, &input) == end_offsets(&input),
    )
    .await;

    first.stop().await;
    wait_for(
        "the survivor to hold all six partitions",
        Duration::from_secs(60),
        || second.gauge("engine_assigned_partitions") == 6,
    )
    .await;
    let more: Vec<(String, Vec<u8>)> = (20_000u64..40_000)
        .map(|i| {
            let key = format!("k{}", i % 300);
            (
                key.clone(),
                serde_json::to_vec(&Item { key, seq: i / 300 }).unwrap(),
            )
        })
        .collect();
    produce_raw(&input, more).await;
    wait_for(
        "every record to be committed",
        Duration::from_secs(90),
        || committed(&app, &input) == end_offsets(&input),
    )
    .await;
    second.stop().await;

    let total = topic_size(&output) as usize;
    let copies = outputs_by_item(&read_records(&output, total).await);
    assert_eq!(copies.len(), 40_000, "every record has its output");
}

/// 1% malformed records among 50,000: exactly those land in the dead-letter
/// topic with headers naming where they came from and why; every valid
/// record is processed; the group's lag reaches zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pills_go_to_the_dead_letter_topic_and_never_block() {
    let (input, output, app) = fresh_pipeline("poison").await;
    const RECORDS: u64 = 50_000;
    let records: Vec<(String, Vec<u8>)> = (0..RECORDS)
        .map(|i| {
            let key = format!("k{}", i % 400);
            let value = if i % 100 == 42 {
                format!("{{\"key\": \"{key}\", \"seq\": oops {i}").into_bytes()
            } else {
                serde_json::to_vec(&Item {
                    key: key.clone(),
                    seq: i,
                })
                .unwrap()
            };
            (key, value)
        })
        .collect();
    let deliveries = produce_raw(&input, records).await;
    let poison: std::collections::BTreeSet<(i32, i64)> = (0..RECORDS)
        .filter(|i| i % 100 == 42)
        .map(|i| deliveries[i as usize])
        .collect();
    assert_eq!(poison.len(), 500);

    let running = Running::start(
        enrich_topology(&input, &output, Duration::ZERO),
        config(&app),
    );
    wait_for("lag to reach zero", Duration::from_secs(90), || {
        committed(&app, &input) == end_offsets(&input)
    })
    .await;
    running.stop().await;

    let dead_letter_topic = format!("{app}-dead-letters");
    assert_eq!(
        topic_size(&output),
        (RECORDS - 500) as i64,
        "every valid record was processed"
    );
    let dead = read_records(&dead_letter_topic, 500).await;
    let consumer = metadata_consumer("dlq-size");
    let dlq_size: i64 = (0..PARTITIONS)
        .filter_map(|p| {
            consumer
                .fetch_watermarks(&dead_letter_topic, p, Duration::from_secs(5))
                .ok()
        })
        .map(|(_, high)| high)
        .sum();
    assert_eq!(
        dlq_size, 500,
        "exactly the malformed records were dead-lettered"
    );
    let mut found = std::collections::BTreeSet::new();
    for (_, _, key, value, headers) in &dead {
        let header = |name: &str| {
            let value = &headers
                .iter()
                .find(|(k, _)| k == name)
                .unwrap_or_else(|| panic!("header {name}"))
                .1;
            String::from_utf8(value.clone()).unwrap()
        };
        assert_eq!(header("dead-letter.topic"), input);
        assert_eq!(header("dead-letter.operator"), format!("{input}-source"));
        assert_eq!(header("dead-letter.error.class"), "deserialization");
        assert!(header("dead-letter.error.message").contains("json"));
        assert!(header("dead-letter.timestamp").parse::<i64>().unwrap() > 0);
        assert!(
            String::from_utf8_lossy(value).contains("oops"),
            "original bytes are kept"
        );
        assert!(key.starts_with('k'), "original key is kept");
        found.insert((
            header("dead-letter.partition").parse().unwrap(),
            header("dead-letter.offset").parse().unwrap(),
        ));
    }
    assert_eq!(
        found, poison,
        "headers point at exactly the malformed records"
    );
}
