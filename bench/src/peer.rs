//! The systems that live in this binary — the engine and the hand-written
//! loop — run as a child process of the harness (`bench peer …`), exactly
//! like the Kafka Streams and Quix Streams peers, so that CPU time and peak
//! RSS are read the same way for every system, from `/proc/<pid>`, with
//! nothing of the harness (its generated data, its verifier) mixed in.
//!
//! Every peer prints `bench-first-consumed <unix ms>` on stdout when the
//! first input record reaches it, and runs until it is sent SIGTERM.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::operators::TimeWindows;
use engine::serdes::{Json, Utf8};
use engine::{Cluster, KafkaStreams, ProcessingGuarantee, StreamsBuilder, StreamsConfig, Topology};
use rdkafka::Message;

use crate::orders::{
    Order, ProcessedOrder, Stats, WINDOW_MS, enrich, is_valid, preparation_seconds,
};

/// The marker line that starts a run's clock.
pub(crate) const FIRST_CONSUMED: &str = "bench-first-consumed";

/// The jobs every system runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum JobKind {
    /// Decode, validate, enrich, encode.
    Stateless,
    /// Count and sum per customer, re-keyed through a repartition topic.
    Stateful,
    /// Orders per coffee type per one-minute tumbling window.
    Windowed,
}

impl JobKind {
    /// The name peers take on their command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Stateless => "stateless",
            Self::Stateful => "stateful",
            Self::Windowed => "windowed",
        }
    }
}

/// Which in-binary system to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InBinary {
    /// The engine.
    Engine,
    /// The hand-written rdkafka loop.
    Hand,
}

/// Settings of one peer process.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PeerArgs {
    /// The system to run.
    #[arg(long)]
    pub(crate) system: InBinary,
    /// Broker address.
    #[arg(long)]
    pub(crate) bootstrap: String,
    /// The job.
    #[arg(long)]
    pub(crate) job: JobKind,
    /// Input topic.
    #[arg(long)]
    pub(crate) input: String,
    /// Output topic.
    #[arg(long)]
    pub(crate) output: String,
    /// Application id (consumer group).
    #[arg(long)]
    pub(crate) app_id: String,
    /// Where local state goes.
    #[arg(long)]
    pub(crate) state_dir: std::path::PathBuf,
    /// Exactly once (the engine only).
    #[arg(long)]
    pub(crate) eos: bool,
}

static PRINT_MARKER: AtomicBool = AtomicBool::new(false);
static FIRST_SEEN: AtomicBool = AtomicBool::new(false);

/// Prints the start-of-clock line once, when running as a peer process.
pub(crate) fn mark_first_consumed() {
    if PRINT_MARKER.load(Ordering::Relaxed) && !FIRST_SEEN.swap(true, Ordering::Relaxed) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{FIRST_CONSUMED} {now}");
        let _ = stdout.flush();
    }
}

/// Runs one peer until SIGTERM.
pub(crate) fn run(args: &PeerArgs) -> anyhow::Result<()> {
    PRINT_MARKER.store(true, Ordering::Relaxed);
    // A peer never outlives the harness that started it, however that ended.
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        while std::os::unix::process::parent_id() == parent {
            std::thread::sleep(Duration::from_millis(500));
        }
        std::process::exit(0);
    });
    match args.system {
        InBinary::Engine => run_engine(args),
        InBinary::Hand => {
            anyhow::ensure!(!args.eos, "the hand-written loop has no exactly-once mode");
            run_hand(args)
        }
    }
}

/// The engine's topology for `job`.
pub(crate) fn topology(job: JobKind, input: &str, output: &str) -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    let orders = builder
        .stream(input, Utf8, Json::<Order>::new())
        .peek(|_, _| mark_first_consumed());
    match job {
        JobKind::Stateless => orders
            .filter(|_, order| is_valid(order))
            .map_values(|order| enrich(order, "2026-11-25T16:00:01Z"))
            .to(output, Utf8, Json::<ProcessedOrder>::new()),
        JobKind::Stateful => orders
            .group_by(
                |_id, order| order.customer_name.clone(),
                Utf8,
                Json::<Order>::new(),
            )
            .aggregate(
                "customer-stats",
                Json::<Stats>::new(),
                Stats::default,
                |_, order, stats| Stats {
                    orders: stats.orders + 1,
                    preparation_seconds: stats.preparation_seconds
                        + u64::from(preparation_seconds(&order.coffee_type)),
                },
            )
            .to_stream()
            .to(output, Utf8, Json::<Stats>::new()),
        JobKind::Windowed => orders
            .group_by(
                |_id, order| order.coffee_type.clone(),
                Utf8,
                Json::<Order>::new(),
            )
            .windowed_by(
                TimeWindows::tumbling(Duration::from_millis(WINDOW_MS as u64))
                    .grace(Duration::from_secs(3600)),
            )
            .count("coffee-demand")
            .to_stream()
            .map(|window, count| {
                (
                    format!("{}@{}", window.key, window.start),
                    count.to_string(),
                )
            })
            .to(output, Utf8, Utf8),
    }
    Ok(builder.build()?)
}

fn run_engine(args: &PeerArgs) -> anyhow::Result<()> {
    let mut config = StreamsConfig::new(&args.app_id).bootstrap_servers(Some(&args.bootstrap));
    config.state_dir = args.state_dir.clone();
    if args.eos {
        config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    }
    let streams = KafkaStreams::new(
        topology(args.job, &args.input, &args.output)?,
        config,
        Cluster::kafka(&args.bootstrap),
    )?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(streams.run(engine::shutdown::signal()))?;
    Ok(())
}

fn run_hand(args: &PeerArgs) -> anyhow::Result<()> {
    // SIGTERM ends the process; the harness has measured everything by then.
    let stop = AtomicBool::new(false);
    let (bootstrap, group, input, output) =
        (&args.bootstrap, &args.app_id, &args.input, &args.output);
    match args.job {
        JobKind::Stateless => crate::hand::run(bootstrap, group, input, output, &stop),
        JobKind::Stateful => {
            let mut stats: HashMap<String, Stats> = HashMap::new();
            crate::hand::run_with(
                bootstrap,
                group,
                input,
                output,
                &stop,
                |message, outputs| {
                    let Some(order) = message
                        .payload()
                        .and_then(|p| serde_json::from_slice::<Order>(p).ok())
                    else {
                        return Ok(());
                    };
                    let seconds = u64::from(preparation_seconds(&order.coffee_type));
                    let value = match stats.get_mut(&order.customer_name) {
                        Some(entry) => {
                            entry.orders += 1;
                            entry.preparation_seconds += seconds;
                            serde_json::to_vec(&*entry)?
                        }
                        None => {
                            let entry = Stats {
                                orders: 1,
                                preparation_seconds: seconds,
                            };
                            let value = serde_json::to_vec(&entry)?;
                            stats.insert(order.customer_name.clone(), entry);
                            value
                        }
                    };
                    outputs.push((Some(order.customer_name.into_bytes()), value));
                    Ok(())
                },
            )
        }
        JobKind::Windowed => {
            let mut counts: HashMap<String, u64> = HashMap::new();
            crate::hand::run_with(
                bootstrap,
                group,
                input,
                output,
                &stop,
                |message, outputs| {
                    let Some(order) = message
                        .payload()
                        .and_then(|p| serde_json::from_slice::<Order>(p).ok())
                    else {
                        return Ok(());
                    };
                    let timestamp = message.timestamp().to_millis().unwrap_or(0);
                    let key = format!(
                        "{}@{}",
                        order.coffee_type,
                        timestamp - timestamp.rem_euclid(WINDOW_MS)
                    );
                    let count = counts.entry(key.clone()).or_default();
                    *count += 1;
                    outputs.push((Some(key.into_bytes()), count.to_string().into_bytes()));
                    Ok(())
                },
            )
        }
    }
}
