//! Exactly-once under crashes, checked the way Kafka checks its own
//! transactions: a child process keeps a count and a sum per key under
//! `exactly_once`, is killed with SIGKILL again and again mid-stream and
//! restarted; afterwards a verifier reads everything read_committed and
//! checks every step of every key. The same run under `at_least_once` must
//! fail the verifier, or the test is not sensitive enough to mean anything.
//!
//! The same verifier checks an application fenced mid-stream by another
//! producer with its transactional id: it rebuilds its stream thread in
//! place and goes on, exactly once. A fault no rebuild can fix stops it
//! with an error after a bounded number of attempts. Partitions moving
//! between two instances mid-stream, while commits are under way, keep it
//! exactly once too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use engine::serdes::{Json, Utf8};
use engine::{Cluster, KafkaStreams, StreamsBuilder, StreamsConfig, Topology};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use serde::{Deserialize, Serialize};

const PARTITIONS: i32 = 4;
const KEYS: u64 = 1_000;
const ROUNDS: u64 = 50;
const KILLS: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Input {
    key: String,
    seq: u64,
    amount: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Totals {
    count: u64,
    sum: u64,
    last_seq: u64,
}

fn amount(seq: u64, key: u64) -> u64 {
    (seq * 7 + key * 13) % 100 + 1
}

fn totals_topology(input: &str, output: &str, work: Duration) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Utf8, Json::<Input>::new())
        .peek(move |_, _| busy_work(work))
        .group_by_key(Utf8, Json::<Input>::new())
        .aggregate(
            "totals",
            Json::<Totals>::new(),
            Totals::default,
            |_, input, totals| Totals {
                count: totals.count + 1,
                sum: totals.sum + input.amount,
                last_seq: input.seq,
            },
        )
        .to_stream()
        .to(output, Utf8, Json::<Totals>::new());
    builder.build().unwrap()
}

/// The child process: runs the topology until SIGTERM (or SIGKILL).
#[test]
#[ignore = "runs only as a child process of other tests"]
fn totals_child() {
    let env = |key: &str| std::env::var(key).unwrap();
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut config =
            StreamsConfig::new(&env("CHILD_APP")).bootstrap_servers(Some(&env("CHILD_BOOTSTRAP")));
        config.processing_guarantee = env("CHILD_GUARANTEE").parse().unwrap();
        config.commit_interval_ms = Some(100);
        config.session_timeout_ms = 2_000;
        config.state_dir = env("CHILD_STATE_DIR").into();
        let work = Duration::from_micros(env("CHILD_WORK_US").parse().unwrap());
        let topology = totals_topology(&env("CHILD_INPUT"), &env("CHILD_OUTPUT"), work);
        let streams =
            KafkaStreams::new(topology, config, Cluster::kafka(&env("CHILD_BOOTSTRAP"))).unwrap();
        streams.run(engine::shutdown::signal()).await.unwrap();
    });
}

struct Run {
    app: String,
    input: String,
    output: String,
    state_dir: tempfile::TempDir,
    guarantee: &'static str,
}

impl Run {
    fn spawn(&self) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "totals_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CHILD_APP", &self.app)
            .env("CHILD_BOOTSTRAP", testkit::kafka().bootstrap_servers())
            .env("CHILD_INPUT", &self.input)
            .env("CHILD_OUTPUT", &self.output)
            .env("CHILD_GUARANTEE", self.guarantee)
            .env("CHILD_STATE_DIR", self.state_dir.path())
            .env("CHILD_WORK_US", "150")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }
}

/// `ROUNDS` records for each of `KEYS` keys, with known amounts.
fn input_records() -> Vec<(String, Vec<u8>)> {
    (0..ROUNDS * KEYS)
        .map(|i| {
            let (key, seq) = (i % KEYS, i / KEYS);
            let input = Input {
                key: format!("k{key}"),
                seq,
                amount: amount(seq, key),
            };
            (input.key.clone(), serde_json::to_vec(&input).unwrap())
        })
        .collect()
}

/// Loads the input, then runs the child under `guarantee`, killing it
/// `KILLS` times mid-stream (each kill proven to land while input was
/// still unprocessed), and finally lets it finish and stop cleanly.
async fn crash_run(guarantee: &'static str) -> Run {
    let (app, input, output) = fresh_app(guarantee).await;
    let run = Run {
        app,
        input,
        output,
        state_dir: tempfile::tempdir().unwrap(),
        guarantee,
    };
    produce_raw(&run.input, input_records()).await;
    let total = (ROUNDS * KEYS) as i64;

    let mut last_committed = 0;
    let started = Instant::now();
    for kill in 0..KILLS {
        let mut child = run.spawn();
        eprintln!("{guarantee}: start {kill} at {:.1?}", started.elapsed());
        let target = last_committed + 3_000;
        wait_for(
            "the child to commit more input",
            Duration::from_secs(120),
            || committed(&run.app, &run.input).iter().sum::<i64>() >= target,
        )
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        last_committed = committed(&run.app, &run.input).iter().sum::<i64>();
        assert!(
            last_committed < total,
            "kill {kill} landed mid-stream ({last_committed} of {total} inputs committed)"
        );
    }
    let mut child = run.spawn();
    eprintln!("{guarantee}: last start at {:.1?}", started.elapsed());
    wait_for(
        "the last run to commit everything",
        Duration::from_secs(180),
        || committed(&run.app, &run.input) == end_offsets(&run.input),
    )
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.wait().unwrap().success(),
        "the last run stops cleanly"
    );
    eprintln!("{guarantee}: done at {:.1?}", started.elapsed());
    run
}

/// A fresh application id, and fresh input and output topics of
/// `PARTITIONS` partitions, all named after `name`.
async fn fresh_app(name: &str) -> (String, String, String) {
    let kafka = testkit::kafka();
    let (app, input, output) = (
        testkit::unique_name(&format!("eos-{name}")),
        testkit::unique_name(&format!("{name}-in")),
        testkit::unique_name(&format!("{name}-out")),
    );
    kafka.create_topic(&input, PARTITIONS).await;
    kafka.create_topic(&output, PARTITIONS).await;
    (app, input, output)
}

/// Asserts that the verifier finds one output per input in `output` and
/// every step right; `when` says under what the run went.
async fn assert_exactly_once(output: &str, when: &str) {
    let verdict = verify(output).await;
    assert!(
        verdict.violations.is_empty(),
        "exactly-once violated {when}: {:?}",
        &verdict.violations[..verdict.violations.len().min(10)]
    );
    assert_eq!(verdict.outputs, ROUNDS * KEYS, "one output per input");
}

/// What the verifier found.
#[derive(Debug, Default)]
struct Verdict {
    outputs: u64,
    violations: Vec<String>,
}

/// Reads the output read_committed and checks every step of every key.
async fn verify(output: &str) -> Verdict {
    let bootstrap = testkit::kafka().bootstrap_servers();
    // With no transaction left open, read_committed can read to the end.
    let committed_reader: BaseConsumer = testkit::kafka()
        .client_config()
        .set("group.id", "eos-verifier-lso")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let uncommitted_reader: BaseConsumer = testkit::kafka()
        .client_config()
        .set("group.id", "eos-verifier-hw")
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let mut verdict = Verdict::default();
    for partition in 0..PARTITIONS {
        let (_, stable) = committed_reader
            .fetch_watermarks(output, partition, Duration::from_secs(10))
            .unwrap();
        let (_, high) = uncommitted_reader
            .fetch_watermarks(output, partition, Duration::from_secs(10))
            .unwrap();
        if stable != high {
            verdict.violations.push(format!(
                "partition {partition}: a transaction is still open ({stable} < {high})"
            ));
        }
    }
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", testkit::unique_name("eos-verifier"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    consumer.subscribe(&[output]).unwrap();
    let mut per_key: HashMap<String, Vec<Totals>> = HashMap::new();
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < PARTITIONS as usize {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("output keeps coming")
        {
            Ok(message) => {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let totals: Totals =
                    serde_json::from_slice(message.payload().unwrap_or_default()).unwrap();
                per_key.entry(key).or_default().push(totals);
                verdict.outputs += 1;
            }
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                ended.insert(partition);
            }
            Err(error) => panic!("verifier: {error}"),
        }
    }
    for key in 0..KEYS {
        let name = format!("k{key}");
        let steps = per_key.remove(&name).unwrap_or_default();
        let mut expected = Totals::default();
        for seq in 0..ROUNDS {
            expected = Totals {
                count: seq + 1,
                sum: expected.sum + amount(seq, key),
                last_seq: seq,
            };
            match steps.get(seq as usize) {
                Some(step) if *step == expected => {}
                Some(step) => {
                    verdict.violations.push(format!(
                        "{name} step {seq}: expected {expected:?}, got {step:?}"
                    ));
                    break;
                }
                None => {
                    verdict
                        .violations
                        .push(format!("{name}: only {} of {ROUNDS} steps", steps.len()));
                    break;
                }
            }
        }
        if steps.len() as u64 > ROUNDS {
            verdict.violations.push(format!(
                "{name}: {} outputs for {ROUNDS} inputs",
                steps.len()
            ));
        }
    }
    if !per_key.is_empty() {
        verdict
            .violations
            .push(format!("outputs for {} keys never written", per_key.len()));
    }
    verdict
}

/// The acceptance test: SIGKILL five times mid-stream under exactly-once;
/// every input has exactly one output, every count and sum is right at
/// every step, nothing extra, no transaction left open. The same run under
/// at-least-once must be caught by the same verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_repeated_sigkill_and_at_least_once_does_not() {
    let begun = Instant::now();
    let exactly_once = crash_run("exactly_once").await;
    let verdict = verify(&exactly_once.output).await;
    eprintln!(
        "exactly_once: {} outputs, violations: {:?}",
        verdict.outputs,
        &verdict.violations[..verdict.violations.len().min(5)]
    );
    assert!(
        verdict.violations.is_empty(),
        "exactly-once violated: {:?}",
        &verdict.violations[..verdict.violations.len().min(10)]
    );
    assert_eq!(verdict.outputs, ROUNDS * KEYS, "one output per input");

    // Negative control: the verifier must see at-least-once's duplicates.
    eprintln!("verified at {:.1?}", begun.elapsed());
    let at_least_once = crash_run("at_least_once").await;
    let control = verify(&at_least_once.output).await;
    eprintln!(
        "at_least_once: {} outputs, {} violations",
        control.outputs,
        control.violations.len()
    );
    assert!(
        !control.violations.is_empty(),
        "the same crashes under at-least-once showed no duplicate: the test is not sensitive"
    );
}

/// A configuration for an in-process exactly-once run with a known
/// instance id, so a test knows the transactional id of thread 0:
/// `<app>-<instance>-0`.
fn exactly_once_config(app: &str, instance: &str, state_dir: &std::path::Path) -> StreamsConfig {
    let mut config = config(app);
    config.processing_guarantee = engine::ProcessingGuarantee::ExactlyOnce;
    config.commit_interval_ms = Some(100);
    config.instance_id = Some(instance.to_owned());
    config.state_dir = state_dir.to_path_buf();
    config
}

/// Takes the transactional id over, as a newer instance would: the
/// application's producer is fenced from its next transactional request on.
fn fence(transactional_id: &str) {
    use rdkafka::producer::{BaseProducer, Producer};
    let fencer: BaseProducer = testkit::kafka()
        .client_config()
        .set("transactional.id", transactional_id)
        .create()
        .unwrap();
    fencer.init_transactions(Duration::from_secs(30)).unwrap();
}

/// Fenced twice mid-stream by a producer taking over its transactional id,
/// the application rebuilds its stream thread in place each time (proven by
/// the rebuild metric rising while input was still unprocessed) and goes
/// on: the verifier finds exactly one output per input and every count and
/// sum right at every step, and the application stops cleanly, having
/// rebuilt no more than the fences explain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_rebuilds_in_place_when_fenced_mid_stream() {
    const FENCES: u64 = 2;
    init_logging();
    let (app, input, output) = fresh_app("fenced").await;
    produce_raw(&input, input_records()).await;
    let total = (ROUNDS * KEYS) as i64;
    let state_dir = tempfile::tempdir().unwrap();
    let running = Running::start(
        totals_topology(&input, &output, Duration::from_micros(150)),
        exactly_once_config(&app, "fenced", state_dir.path()),
    );
    let transactional_id = format!("{app}-fenced-0");
    let mut last_committed = 0;
    for fenced in 1..=FENCES {
        let target = last_committed + 5_000;
        wait_for(
            "the application to commit more input",
            Duration::from_secs(120),
            || committed(&app, &input).iter().sum::<i64>() >= target,
        )
        .await;
        let before = counter(&running.registry, "engine_thread_rebuilds_total");
        fence(&transactional_id);
        wait_for(
            "the application to rebuild its stream thread",
            Duration::from_secs(60),
            || counter(&running.registry, "engine_thread_rebuilds_total") > before,
        )
        .await;
        last_committed = committed(&app, &input).iter().sum::<i64>();
        assert!(
            last_committed < total,
            "fence {fenced} landed mid-stream ({last_committed} of {total} inputs committed after the rebuild)"
        );
        eprintln!("fence {fenced}: rebuilt with {last_committed} of {total} inputs committed");
    }
    wait_for(
        "every input to be committed",
        Duration::from_secs(180),
        || committed(&app, &input) == end_offsets(&input),
    )
    .await;
    // A fence may cost two rebuilds, never more. Taking over an id whose
    // transaction is open, the coordinator bumps the epoch and aborts that
    // transaction (fencing the application), answers "concurrent
    // transactions", and bumps the epoch again on the fencer's retry. When
    // the rebuilt thread has already initialised its new producer by then,
    // that second bump fences it too, and it is rebuilt once more. A
    // rebuild loop would go past the bound.
    let rebuilds = counter(&running.registry, "engine_thread_rebuilds_total");
    assert!(
        (FENCES..=2 * FENCES).contains(&rebuilds),
        "{rebuilds} rebuilds for {FENCES} fences: one or two per fence expected"
    );
    running.stop().await;

    assert_exactly_once(&output, "after fencing").await;
}

/// Partitions move while commits are under way: a second instance joins
/// mid-stream (the first revokes half of its partitions, finishing the
/// commit it had begun and committing what it held back), then the first
/// stops cleanly mid-stream and the second takes everything over. Commits
/// begin every 100 ms and, with outputs lingering 200 ms, are nearly
/// always under way, so both hand-overs find one. The verifier still finds exactly one output per input and
/// every count and sum right at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_holds_when_partitions_move_mid_stream() {
    let (app, input, output) = fresh_app("moved").await;
    produce_raw(&input, input_records()).await;
    let total = (ROUNDS * KEYS) as i64;
    let progress = |app: &str| committed(app, &input).iter().sum::<i64>();
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Outputs linger longer than the commit interval, so a commit is under
    // way nearly all the time, and so when partitions move.
    let lingering = |instance: &str, dir: &std::path::Path| {
        let mut config = exactly_once_config(&app, instance, dir);
        config.linger_ms = 200;
        config
    };
    let first = Running::start(
        totals_topology(&input, &output, Duration::from_micros(150)),
        lingering("first", first_dir.path()),
    );
    wait_for(
        "the first instance to commit some input",
        Duration::from_secs(120),
        || progress(&app) >= 5_000,
    )
    .await;
    let second = Running::start(
        totals_topology(&input, &output, Duration::from_micros(150)),
        lingering("second", second_dir.path()),
    );
    wait_for(
        "the partitions to be shared",
        Duration::from_secs(120),
        || {
            let (a, b) = (
                first.gauge("engine_assigned_partitions"),
                second.gauge("engine_assigned_partitions"),
            );
            a > 0 && b > 0 && a + b == i64::from(PARTITIONS)
        },
    )
    .await;
    let shared_at = progress(&app);
    wait_for(
        "both instances to commit more input",
        Duration::from_secs(120),
        || progress(&app) >= shared_at + 5_000,
    )
    .await;
    first.stop().await;
    let first_stopped_at = progress(&app);
    assert!(
        first_stopped_at < total,
        "the first instance stopped mid-stream ({first_stopped_at} of {total} inputs committed)"
    );
    eprintln!("shared at {shared_at}, first stopped at {first_stopped_at} of {total}");
    wait_for(
        "every input to be committed",
        Duration::from_secs(180),
        || committed(&app, &input) == end_offsets(&input),
    )
    .await;
    second.stop().await;

    assert_exactly_once(&output, "when partitions moved").await;
}

/// A transactional fault no new producer can fix (here a transaction
/// timeout the broker refuses, above its `transaction.max.timeout.ms`)
/// stops the application with an error naming the attempts, after the
/// bounded number of rebuilds — not a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_fault_no_rebuild_fixes_stops_the_application() {
    let (app, input, output) = fresh_app("doomed").await;
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = exactly_once_config(&app, "doomed", state_dir.path());
    // The broker's default maximum is 15 minutes.
    config
        .client
        .insert("transaction.timeout.ms".into(), "900001".into());
    let running = Running::start(totals_topology(&input, &output, Duration::ZERO), config);
    let outcome = tokio::time::timeout(Duration::from_secs(120), running.handle)
        .await
        .expect("the application stops by itself")
        .unwrap();
    let error = outcome.expect_err("the application cannot run");
    eprintln!("stopped with: {error}");
    assert!(
        matches!(
            &error,
            engine::EngineError::TransactionsFailed { attempts, .. } if *attempts == 6
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("transaction"), "{error}");
    assert_eq!(
        counter(&running.registry, "engine_thread_rebuilds_total"),
        5,
        "five rebuilds, then it gave up"
    );
}
