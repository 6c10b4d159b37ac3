//! Benchmark harness: the engine next to a hand-written rdkafka loop doing
//! the same work on the same broker, measured in one run.
//!
//!     cargo run --release -p bench -- all [--records 1000000]
//!     cargo run --release -p bench -- stateless [--records 1000000]
//!     cargo run --release -p bench -- http-load [--clients 64,256]
//!
//! `all` compares the engine with Kafka Streams, Quix Streams and a
//! hand-written loop on every job (see `compare`); the others are the
//! earlier, narrower comparisons.
//!
//! Starts the project's Kafka broker (or uses `KAFKA_BROKERS`), loads the
//! records once, then runs each system from offset 0 with a fresh group and
//! output topic, and prints a Markdown table for `docs/benchmarks.md`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod compare;
mod hand;
mod http_load;
mod orders;
mod peer;
mod stateful;
mod systems;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use engine::serdes::{Json, Utf8};
use engine::{Cluster, KafkaStreams, StreamsBuilder, StreamsConfig};
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use orders::{Order, ProcessedOrder, enrich, is_valid};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    job: Job,
}

#[derive(Subcommand)]
enum Job {
    /// Every system (the engine, Kafka Streams in two profiles, Quix
    /// Streams, the hand-written loop) on every job, side by side.
    All(compare::AllArgs),
    /// One system of this binary as a child process of `all` (internal).
    #[command(hide = true)]
    Peer(peer::PeerArgs),
    /// Decode, validate, enrich, encode: the engine vs a hand-written loop.
    Stateless {
        /// Records to load.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Partitions of the input and output topics.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Distinct customers.
        #[arg(long, default_value_t = 10_000)]
        customers: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Runs of each system (alternating).
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Run only this system (`engine` or `hand`), e.g. under a profiler.
        #[arg(long)]
        only: Option<String>,
    },
    /// Count and sum per customer (re-key + aggregate), at least once and
    /// exactly once, then the restore rate from the changelog.
    Stateful {
        /// Records to load.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Partitions of the input topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Distinct customers (keys).
        #[arg(long, default_value_t = 10_000)]
        customers: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// `POST /order` on the producer: acks=all on the broker next to Kafka
    /// stubbed out (the HTTP ceiling); orders/s and latency percentiles.
    HttpLoad {
        /// Concurrent clients of the closed-loop runs (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "64,256")]
        clients: Vec<usize>,
        /// Offered rates of open-loop runs, orders/s (comma-separated),
        /// with the largest client count.
        #[arg(long, value_delimiter = ',')]
        rate: Vec<u64>,
        /// Measured seconds per run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Warm-up seconds before each measurement.
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Seconds of unmeasured load before the first Kafka run, so the
        /// broker's JIT has compiled its hot paths.
        #[arg(long, default_value_t = 20)]
        broker_warmup: u64,
        /// Partitions of the orders topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// The producer's linger.ms, one acks=all run each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        linger_ms: Vec<u64>,
        /// Worker threads of the producer's runtime.
        #[arg(long, default_value_t = 2)]
        server_threads: usize,
        /// Worker threads of the load generator.
        #[arg(long, default_value_t = 1)]
        client_threads: usize,
        /// Only `kafka` or only `ceiling`.
        #[arg(long)]
        only: Option<String>,
    },
}

/// One system's measurement.
struct Measurement {
    system: &'static str,
    records: u64,
    seconds: f64,
    app_cpu: f64,
    broker_cpu: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Args::parse().job {
        Job::All(args) => {
            let (bootstrap, broker_pid) = broker()?;
            compare::run(&args, &bootstrap, broker_pid)
        }
        Job::Peer(args) => peer::run(&args),
        Job::Stateless {
            records,
            partitions,
            customers,
            seed,
            runs,
            only,
        } => stateless(records, partitions, customers, seed, runs, only),
        Job::Stateful {
            records,
            partitions,
            customers,
            seed,
        } => {
            let (bootstrap, broker_pid) = broker()?;
            stateful::run(&bootstrap, broker_pid, records, partitions, customers, seed)
        }
        Job::HttpLoad {
            clients,
            rate,
            seconds,
            warmup,
            broker_warmup,
            partitions,
            linger_ms,
            server_threads,
            client_threads,
            only,
        } => http_load::run(&http_load::Settings {
            clients,
            rates: rate,
            seconds,
            warmup,
            broker_warmup,
            partitions,
            linger_ms,
            server_threads,
            client_threads,
            only,
        }),
    }
}

fn stateless(
    records: u64,
    partitions: i32,
    customers: u64,
    seed: u64,
    runs: usize,
    only: Option<String>,
) -> anyhow::Result<()> {
    let (bootstrap, broker_pid) = broker()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let cluster = Cluster::kafka(&bootstrap);
    let input = format!("bench-orders-{}", std::process::id());
    cluster.create_topic(&input, partitions, &[])?;
    eprintln!("loading {records} orders into {input} ({partitions} partitions) ...");
    let data = orders::generate(records, customers, seed);
    let bytes: usize = data.iter().map(|(_, v)| v.len()).sum();
    runtime.block_on(load(&bootstrap, &input, data))?;
    let expected = orders::expected_valid(records, customers, seed);
    eprintln!(
        "loaded; mean value size {} B; {expected} valid orders",
        bytes as u64 / records.max(1)
    );

    let mut results = Vec::new();
    for run in 0..runs {
        for system in ["engine", "hand-written loop"] {
            if only
                .as_deref()
                .is_some_and(|only| !system.starts_with(only))
            {
                continue;
            }
            let output = format!(
                "bench-processed-{}-{run}-{}",
                std::process::id(),
                results.len()
            );
            cluster.create_topic(&output, partitions, &[])?;
            let group = format!("bench-{}-{run}-{}", std::process::id(), results.len());
            let measurement = measure(
                system, &bootstrap, &input, &output, &group, partitions, expected, broker_pid,
                &runtime,
            )?;
            eprintln!(
                "{system}: {:.0} records/s, {:.2} CPU-s per million (app)",
                measurement.records as f64 / measurement.seconds,
                measurement.app_cpu / measurement.records as f64 * 1e6
            );
            results.push(measurement);
        }
    }
    print_table(&results, records);
    Ok(())
}

/// The broker to use: `KAFKA_BROKERS`, or the project's own, started now.
fn broker() -> anyhow::Result<(String, Option<u32>)> {
    if let Ok(brokers) = std::env::var("KAFKA_BROKERS")
        && !brokers.trim().is_empty()
    {
        return Ok((brokers, None));
    }
    let kafka = testkit::kafka();
    let pid = kafka
        .dir()
        .and_then(|dir| std::fs::read_to_string(dir.join("broker.pid")).ok())
        .and_then(|pid| pid.trim().parse().ok());
    Ok((kafka.bootstrap_servers().to_owned(), pid))
}

pub(crate) async fn load(
    bootstrap: &str,
    topic: &str,
    data: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("partitioner", "murmur2_random")
        .create()?;
    let results: Vec<_> = futures::stream::iter(data.into_iter().map(|(key, value)| {
        let producer = &producer;
        async move {
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|(error, _)| error)
        }
    }))
    .buffer_unordered(50_000)
    .collect()
    .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure(
    system: &'static str,
    bootstrap: &str,
    input: &str,
    output: &str,
    group: &str,
    partitions: i32,
    expected: u64,
    broker_pid: Option<u32>,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Measurement> {
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (bootstrap, input, output, group, stop) = (
            bootstrap.to_owned(),
            input.to_owned(),
            output.to_owned(),
            group.to_owned(),
            Arc::clone(&stop),
        );
        let handle = runtime.handle().clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            match system {
                "engine" => {
                    let builder = StreamsBuilder::new();
                    builder
                        .stream(&input, Utf8, Json::<Order>::new())
                        .filter(|_, order| is_valid(order))
                        .map_values(|order| enrich(order, "2026-11-25T16:00:01Z"))
                        .to(&output, Utf8, Json::<ProcessedOrder>::new());
                    let mut config = StreamsConfig::new(&group).bootstrap_servers(Some(&bootstrap));
                    config.commit_interval_ms = Some(1_000);
                    let streams =
                        KafkaStreams::new(builder.build()?, config, Cluster::kafka(&bootstrap))?;
                    handle.block_on(streams.run(async move {
                        while !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }))?;
                    Ok(())
                }
                _ => hand::run(&bootstrap, &group, &input, &output, &stop),
            }
        })
    };

    // Sample until the output has everything and the group committed it all.
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()?;
    let ends = |topic: &str| -> anyhow::Result<Vec<i64>> {
        (0..partitions)
            .map(|p| {
                Ok(watcher
                    .fetch_watermarks(topic, p, Duration::from_secs(5))?
                    .1)
            })
            .collect()
    };
    let input_ends = ends(input)?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, f64, Option<f64>)> = None;
    let done = loop {
        if Instant::now() > deadline || worker.is_finished() {
            stop.store(true, Ordering::Relaxed);
            let _ = worker.join();
            bail!("{system} did not finish");
        }
        let now = Instant::now();
        let (app, broker) = (
            cpu_seconds(None)?,
            broker_pid.map(|pid| cpu_seconds(Some(pid))).transpose()?,
        );
        let produced: i64 = ends(output)?.iter().sum();
        if first.is_none() && produced > 0 {
            first = Some((now, app, broker));
        }
        if produced as u64 >= expected && committed(&watcher, input, partitions)? == input_ends {
            break (now, app, broker);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("{system} panicked"))??;
    let produced: i64 = ends(output)?.iter().sum();
    if produced as u64 != expected {
        bail!(
            "{system} wrote {produced} records, expected {expected}: a fast wrong answer is a failure"
        );
    }
    let (start, app0, broker0) = first.context("no output seen")?;
    Ok(Measurement {
        system,
        records: input_ends.iter().sum::<i64>() as u64,
        seconds: (done.0 - start).as_secs_f64(),
        app_cpu: done.1 - app0,
        broker_cpu: done.2.zip(broker0).map(|(b, b0)| b - b0),
    })
}

pub(crate) fn committed(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<i64>> {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(5))?;
    Ok((0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            },
        )
        .collect())
}

/// User + system CPU seconds of a process (this one when `None`).
pub(crate) fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line; 11 and 12 here.
    Ok((ticks(11) + ticks(12)) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn print_table(results: &[Measurement], records: u64) {
    println!("| system | records | seconds | records/s | app CPU-s per 1M | broker CPU-s per 1M |");
    println!("|---|---:|---:|---:|---:|---:|");
    for m in results {
        let per_million = |cpu: f64| cpu / m.records as f64 * 1e6;
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} | {} |",
            m.system,
            m.records,
            m.seconds,
            m.records as f64 / m.seconds,
            per_million(m.app_cpu),
            m.broker_cpu
                .map_or("n/a".to_owned(), |b| format!("{:.2}", per_million(b)))
        );
    }
    let mean = |system: &str| {
        let rates: Vec<f64> = results
            .iter()
            .filter(|m| m.system == system)
            .map(|m| m.records as f64 / m.seconds)
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    };
    let (ours, hand) = (mean("engine"), mean("hand-written loop"));
    println!();
    println!(
        "engine / hand-written loop throughput: {:.2}x ({records} records)",
        ours / hand
    );
}
