//! `bench all`: every system, every job, one broker, one machine, one run.
//!
//! The data is loaded once (uniform and Zipf-skewed customers). Each run
//! starts one system as a child process from offset 0 with a fresh
//! application id, output topic and state directory, and measures:
//!
//! - **throughput**: input records / (arrival of the last output − the
//!   first input record reaching the system). The start comes from the
//!   peer itself (`bench-first-consumed <ms>` on stdout), so JVM or Python
//!   start-up and joining the group are not counted; the end is the
//!   broker's `LogAppendTime` of the last output (output topics are created
//!   with it), so the harness's own polling adds nothing.
//! - **CPU**: user + system time of the child and of the broker
//!   (`/proc/<pid>/stat`), sampled every 50 ms and interpolated at the
//!   start and end of the measured span.
//! - **peak RSS**: `VmHWM` of the child before it is stopped.
//! - **correctness**: the output is read back (read_committed) and must be
//!   exactly what the data set implies — every valid order once (stateless),
//!   the right final count and sum for every customer (stateful), the right
//!   final count for every coffee type and minute (windowed). A fast wrong
//!   answer is a failed run.
//!
//! Then, per system, the stateless job under a fixed-rate open-loop load at
//! a fraction of the engine's measured maximum: each record's key carries
//! its scheduled send time, and its latency is its output's
//! `LogAppendTime` minus that (coordinated omission cannot hide a stall).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use engine::Cluster;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::orders::{Expected, Keys, ProcessedOrder, Stats, preparation_seconds};
use crate::peer::{FIRST_CONSUMED, JobKind};
use crate::systems::{Launch, Provisioned, System};

/// A row of the comparison: a job on a data set, with a guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Decode, validate, enrich, encode (uniform keys).
    Stateless,
    /// Count + sum per customer through a repartition (uniform keys).
    Stateful,
    /// The same on Zipf-skewed customers.
    StatefulZipf,
    /// Orders per coffee type per one-minute tumbling window.
    Windowed,
    /// The stateful job exactly once.
    StatefulEos,
    /// Stateless end-to-end latency under a fixed-rate open-loop load.
    Latency,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Self::Stateless => "stateless",
            Self::Stateful => "stateful",
            Self::StatefulZipf => "stateful, Zipf keys",
            Self::Windowed => "windowed",
            Self::StatefulEos => "stateful, exactly once",
            Self::Latency => "latency",
        }
    }

    fn job(self) -> (JobKind, Keys, bool) {
        match self {
            Self::Stateless | Self::Latency => (JobKind::Stateless, Keys::Uniform, false),
            Self::Stateful => (JobKind::Stateful, Keys::Uniform, false),
            Self::StatefulZipf => (JobKind::Stateful, Keys::Zipf, false),
            Self::Windowed => (JobKind::Windowed, Keys::Uniform, false),
            Self::StatefulEos => (JobKind::Stateful, Keys::Uniform, true),
        }
    }
}

/// Settings of `bench all`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AllArgs {
    /// Records to load (each data set).
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) records: u64,
    /// Partitions of every input and output topic.
    #[arg(long, default_value_t = 6)]
    pub(crate) partitions: i32,
    /// Distinct customers.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) customers: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Systems to run (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours,ks-default,ks-latency,quix,hand"
    )]
    pub(crate) systems: Vec<System>,
    /// Scenarios to run (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "stateless,stateful,stateful-zipf,windowed,stateful-eos,latency"
    )]
    pub(crate) jobs: Vec<Scenario>,
    /// Offered load of the latency runs, records/s; default: the fraction
    /// `--latency-load` of the engine's stateless throughput measured in
    /// this run.
    #[arg(long)]
    pub(crate) latency_rate: Option<u64>,
    /// Fraction of the engine's maximum offered in the latency runs.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) latency_load: f64,
    /// Measured seconds of each latency run.
    #[arg(long, default_value_t = 20)]
    pub(crate) latency_seconds: u64,
    /// Unmeasured seconds of load before that.
    #[arg(long, default_value_t = 5)]
    pub(crate) latency_warmup: u64,
    /// Seconds of unmeasured load through the hand-written loop before the
    /// first latency run, so the broker's JIT and log cleaner do not weigh
    /// on whichever system comes first (0: none).
    #[arg(long, default_value_t = 20)]
    pub(crate) broker_warmup: u64,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub(crate) timeout: u64,
    /// Replace the generated section of this Markdown file (between
    /// `<!-- bench-all:begin -->` and `<!-- bench-all:end -->`, appended
    /// when absent) with the report.
    #[arg(long)]
    pub(crate) docs: Option<PathBuf>,
}

/// One throughput run's figures.
#[derive(Debug, Clone)]
struct Run {
    scenario: Scenario,
    system: System,
    records: u64,
    outcome: Result<Figures, String>,
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    seconds: f64,
    app_cpu: f64,
    broker_cpu: Option<f64>,
    peak_rss_kib: u64,
    outputs: u64,
}

impl Figures {
    fn rate(&self, records: u64) -> f64 {
        records as f64 / self.seconds
    }
    fn per_cpu_second(&self, records: u64) -> f64 {
        records as f64 / self.app_cpu.max(1e-9)
    }
}

/// One latency run's figures.
#[derive(Debug, Clone)]
struct LatencyRun {
    system: System,
    rate: u64,
    outcome: Result<Latencies, String>,
}

#[derive(Debug, Clone, Copy)]
struct Latencies {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    measured: u64,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs `bench all`.
pub(crate) fn run(args: &AllArgs, bootstrap: &str, broker_pid: Option<u32>) -> anyhow::Result<()> {
    let started = unix_ms();
    let load_before = load_average();
    let cluster = Cluster::kafka(bootstrap);
    let tag = format!("{}-{}", std::process::id(), started % 1_000_000);
    let work_dir = std::env::temp_dir().join(format!("bench-all-{tag}"));
    std::fs::create_dir_all(&work_dir)?;
    let provisioned = Provisioned::prepare(&args.systems, &work_dir)?;

    // Load each data set the scenarios need, once.
    let start_ms = unix_ms() / crate::orders::WINDOW_MS * crate::orders::WINDOW_MS;
    let mut datasets: HashMap<&'static str, (String, Expected)> = HashMap::new();
    let mut mean_value_bytes = 0;
    for keys in [Keys::Uniform, Keys::Zipf] {
        if !args
            .jobs
            .iter()
            .any(|s| *s != Scenario::Latency && s.job().1 == keys)
        {
            continue;
        }
        let topic = format!("bench-all-orders-{}-{tag}", keys.name());
        cluster.create_topic(&topic, args.partitions, &[])?;
        let (records, expected) =
            crate::orders::dataset(args.records, args.customers, args.seed, keys, start_ms);
        mean_value_bytes =
            records.iter().map(|r| r.value.len()).sum::<usize>() / records.len().max(1);
        eprintln!(
            "loading {} orders ({} keys, {mean_value_bytes} B each on average) into {topic} ...",
            args.records,
            keys.name()
        );
        load_timestamped(bootstrap, &topic, &records)?;
        datasets.insert(keys.name(), (topic, expected));
    }

    if args.jobs.iter().any(|s| s.job().2) {
        // The broker creates its transaction log on first use; do that
        // now, so no system's first transaction waits for it.
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", format!("bench-warm-up-{tag}"))
            .create()?;
        producer.init_transactions(Duration::from_secs(60))?;
    }

    let mut runs: Vec<Run> = Vec::new();
    for scenario in &args.jobs {
        if *scenario == Scenario::Latency {
            continue;
        }
        let (job, keys, eos) = scenario.job();
        let (input, expected) = datasets.get(keys.name()).context("data set not loaded")?;
        for system in &args.systems {
            if eos && !system.has_exactly_once() {
                continue;
            }
            let n = runs.len();
            let app_id = format!("bench-{}-{}-{tag}-{n}", system.short(), job.name());
            let output = format!("{app_id}-out");
            eprintln!("{}: {} ...", scenario.label(), system.label());
            let outcome = one_run(
                &provisioned,
                *system,
                &RunSettings {
                    bootstrap,
                    broker_pid,
                    job,
                    eos,
                    input,
                    output: &output,
                    app_id: &app_id,
                    partitions: args.partitions,
                    work_dir: &work_dir,
                    timeout: Duration::from_secs(args.timeout),
                },
                expected,
            )
            .map_err(|error| format!("{error:#}"));
            match &outcome {
                Ok(f) => eprintln!(
                    "  {:.0} records/s, {:.2} app CPU-s per 1M, peak RSS {} MiB",
                    f.rate(args.records),
                    f.app_cpu / args.records as f64 * 1e6,
                    f.peak_rss_kib / 1024
                ),
                Err(error) => eprintln!("  FAILED: {error}"),
            }
            runs.push(Run {
                scenario: *scenario,
                system: *system,
                records: args.records,
                outcome,
            });
        }
    }

    let mut latency_runs = Vec::new();
    if args.jobs.contains(&Scenario::Latency) {
        let ours = runs
            .iter()
            .find(|r| r.scenario == Scenario::Stateless && r.system == System::Ours);
        let rate = match (args.latency_rate, ours.map(|r| &r.outcome)) {
            (Some(rate), _) => rate,
            (None, Some(Ok(f))) => (f.rate(args.records) * args.latency_load) as u64,
            _ => bail!(
                "the latency runs need --latency-rate, or the stateless job of ours in the same run"
            ),
        };
        if args.broker_warmup > 0 {
            eprintln!(
                "warming the broker up: {} s at {rate} records/s through the hand-written loop ...",
                args.broker_warmup
            );
            let warm_up = AllArgs {
                latency_warmup: 0,
                latency_seconds: args.broker_warmup,
                ..args.clone()
            };
            let app_id = format!("bench-lat-warm-up-{tag}");
            if let Err(error) = latency_run(
                &provisioned,
                System::Hand,
                bootstrap,
                &app_id,
                &warm_up,
                rate,
                &work_dir,
            ) {
                eprintln!("  (the warm-up did not complete: {error:#})");
            }
        }
        for system in &args.systems {
            eprintln!("latency at {rate} records/s: {} ...", system.label());
            let n = latency_runs.len();
            let app_id = format!("bench-lat-{}-{tag}-{n}", system.short());
            let outcome = latency_run(
                &provisioned,
                *system,
                bootstrap,
                &app_id,
                args,
                rate,
                &work_dir,
            )
            .map_err(|error| format!("{error:#}"));
            match &outcome {
                Ok(l) => eprintln!(
                    "  p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms",
                    l.p50, l.p99, l.p999
                ),
                Err(error) => eprintln!("  FAILED: {error}"),
            }
            latency_runs.push(LatencyRun {
                system: *system,
                rate,
                outcome,
            });
        }
    }
    std::fs::remove_dir_all(&work_dir).ok();

    let report = report(
        args,
        &provisioned,
        &runs,
        &latency_runs,
        &load_before,
        &load_average(),
        mean_value_bytes,
    );
    println!("{report}");
    if let Some(path) = &args.docs {
        write_docs(path, &report)?;
        eprintln!("wrote the report into {}", path.display());
    }
    let failed = runs.iter().filter(|r| r.outcome.is_err()).count()
        + latency_runs.iter().filter(|r| r.outcome.is_err()).count();
    if failed > 0 {
        bail!("{failed} run(s) failed (see the table)");
    }
    Ok(())
}

/// Loads `records` with their own timestamps (the windowed job counts by them).
fn load_timestamped(
    bootstrap: &str,
    topic: &str,
    records: &[crate::orders::Generated],
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    for record in records {
        let mut out = BaseRecord::to(topic)
            .key(&record.key)
            .payload(&record.value)
            .timestamp(record.timestamp);
        loop {
            match producer.send(out) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    out = back;
                    producer.poll(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

struct RunSettings<'a> {
    bootstrap: &'a str,
    broker_pid: Option<u32>,
    job: JobKind,
    eos: bool,
    input: &'a str,
    output: &'a str,
    app_id: &'a str,
    partitions: i32,
    work_dir: &'a std::path::Path,
    timeout: Duration,
}

/// A started peer: its process, the start-of-clock time it reported, and
/// where its stderr goes.
struct Peer {
    child: Child,
    first_consumed: Arc<Mutex<Option<i64>>>,
    log: PathBuf,
}

impl Peer {
    fn start(
        provisioned: &Provisioned,
        system: System,
        launch: &Launch<'_>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut command = provisioned.command(system, launch)?;
        let stderr = std::fs::File::create(&log)?;
        command.stdout(Stdio::piped()).stderr(stderr);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", system.label()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let first_consumed = Arc::new(Mutex::new(None));
        let first = Arc::clone(&first_consumed);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ms) = line
                    .strip_prefix(FIRST_CONSUMED)
                    .and_then(|rest| rest.trim().parse::<i64>().ok())
                    && let Ok(mut first) = first.lock()
                {
                    first.get_or_insert(ms);
                }
            }
        });
        Ok(Self {
            child,
            first_consumed,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn first_consumed(&self) -> Option<i64> {
        self.first_consumed.lock().ok().and_then(|f| *f)
    }

    /// Fails with the end of the peer's log if it has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("exited early ({status}): {}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// SIGTERM, then SIGKILL after 30 s.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds and `VmHWM` of a process.
fn proc_cpu(pid: u32) -> Option<f64> {
    crate::cpu_seconds(Some(pid)).ok()
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// CPU samples `(unix ms, app, broker)`, interpolated at any time.
#[derive(Default)]
struct CpuSeries(Vec<(i64, f64, Option<f64>)>);

impl CpuSeries {
    fn sample(&mut self, pid: u32, broker: Option<u32>) {
        if let Some(app) = proc_cpu(pid) {
            self.0.push((unix_ms(), app, broker.and_then(proc_cpu)));
        }
    }

    fn at(&self, t: i64) -> (f64, Option<f64>) {
        let i = self.0.partition_point(|(ms, _, _)| *ms <= t);
        match (i.checked_sub(1).and_then(|j| self.0.get(j)), self.0.get(i)) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let f = (t - a.0) as f64 / (b.0 - a.0) as f64;
                let lerp = |x: f64, y: f64| x + (y - x) * f;
                (lerp(a.1, b.1), a.2.zip(b.2).map(|(x, y)| lerp(x, y)))
            }
            (Some(a), _) => (a.1, a.2),
            (None, Some(b)) => (b.1, b.2),
            (None, None) => (0.0, None),
        }
    }
}

fn one_run(
    provisioned: &Provisioned,
    system: System,
    settings: &RunSettings<'_>,
    expected: &Expected,
) -> anyhow::Result<Figures> {
    let cluster = Cluster::kafka(settings.bootstrap);
    cluster.create_topic(
        settings.output,
        settings.partitions,
        &[("message.timestamp.type", "LogAppendTime")],
    )?;
    let state_dir = settings.work_dir.join(settings.app_id);
    std::fs::create_dir_all(&state_dir)?;
    let mut peer = Peer::start(
        provisioned,
        system,
        &Launch {
            bootstrap: settings.bootstrap,
            job: settings.job,
            eos: settings.eos,
            input: settings.input,
            output: settings.output,
            app_id: settings.app_id,
            state_dir: &state_dir,
        },
        settings.work_dir.join(format!("{}.log", settings.app_id)),
    )?;
    let result = measure(&mut peer, settings, expected);
    let rss = peak_rss_kib(peer.pid());
    peer.stop();
    std::fs::remove_dir_all(&state_dir).ok();
    let (seconds, app_cpu, broker_cpu, outputs) = result?;
    Ok(Figures {
        seconds,
        app_cpu,
        broker_cpu,
        peak_rss_kib: rss,
        outputs,
    })
}

fn measure(
    peer: &mut Peer,
    settings: &RunSettings<'_>,
    expected: &Expected,
) -> anyhow::Result<(f64, f64, Option<f64>, u64)> {
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", settings.bootstrap)
        .create()?;
    let mut verifier = Verifier::new(settings.bootstrap, settings.output, settings.partitions)?;
    let mut series = CpuSeries::default();
    let deadline = Instant::now() + settings.timeout;
    let mut last_ends: Option<i64> = None;
    let mut next_check = Instant::now();
    loop {
        peer.check_alive()?;
        series.sample(peer.pid(), settings.broker_pid);
        if Instant::now() > deadline {
            bail!("no complete output within {:?}", settings.timeout);
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_millis(250);
            let ends: i64 = (0..settings.partitions)
                .map(|p| {
                    watcher
                        .fetch_watermarks(settings.output, p, Duration::from_secs(5))
                        .map(|w| w.1)
                })
                .sum::<Result<i64, _>>()?;
            // Read the output back once it has stopped growing (or, for the
            // stateless job, once it has as many records as expected), so
            // the verifier does not compete with the system for CPU.
            let ready = match settings.job {
                JobKind::Stateless => ends as u64 >= expected.valid,
                _ => ends > 0 && last_ends == Some(ends),
            };
            last_ends = Some(ends);
            if ready && peer.first_consumed().is_some() {
                verifier.read_available()?;
                if verifier.complete(settings.job, expected)? {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = peer
        .first_consumed()
        .context("the peer never reported its first record")?;
    let last = verifier.last_append_ms;
    series.sample(peer.pid(), settings.broker_pid);
    let (app0, broker0) = series.at(first);
    let (app1, broker1) = series.at(last);
    let seconds = (last - first).max(1) as f64 / 1000.0;
    Ok((
        seconds,
        app1 - app0,
        broker1.zip(broker0).map(|(b1, b0)| b1 - b0),
        verifier.records,
    ))
}

/// Reads an output topic back (read_committed) and checks it against the
/// data set.
struct Verifier {
    consumer: BaseConsumer,
    records: u64,
    last_append_ms: i64,
    /// Stateless: order ids seen.
    ids: HashSet<Vec<u8>>,
    /// Stateful and windowed: the latest value per key.
    latest: HashMap<Vec<u8>, Vec<u8>>,
    /// The first malformed output, if any.
    malformed: Option<String>,
}

impl Verifier {
    fn new(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-verifier"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        Ok(Self {
            consumer,
            records: 0,
            last_append_ms: 0,
            ids: HashSet::new(),
            latest: HashMap::new(),
            malformed: None,
        })
    }

    /// Reads until nothing more arrives for a while (the caller checks
    /// completeness and calls again if the output is not complete yet).
    fn read_available(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        // The first read of a new consumer waits for it to join and fetch.
        let mut idle = Duration::from_secs(if self.records == 0 { 10 } else { 1 });
        while let Some(message) = poll_until_idle(&self.consumer, idle, deadline)? {
            idle = Duration::from_secs(1);
            self.records += 1;
            if let Timestamp::LogAppendTime(ms) = message.timestamp() {
                self.last_append_ms = self.last_append_ms.max(ms);
            } else if self.malformed.is_none() {
                self.malformed = Some("an output without LogAppendTime".into());
            }
            let key = message.key().unwrap_or_default().to_vec();
            let value = message.payload().unwrap_or_default().to_vec();
            self.latest.insert(key, value);
        }
        Ok(())
    }

    /// Whether the output is complete; an error when it is wrong (too many
    /// records, a count past the expected one, a malformed record).
    fn complete(&mut self, job: JobKind, expected: &Expected) -> anyhow::Result<bool> {
        if let Some(problem) = &self.malformed {
            bail!("{problem}");
        }
        match job {
            JobKind::Stateless => {
                // Stateless keeps only the ids; values are checked as they go.
                for (key, value) in self.latest.drain() {
                    let order: ProcessedOrder =
                        serde_json::from_slice(&value).with_context(|| {
                            format!(
                                "an output is not a processed order: {}",
                                String::from_utf8_lossy(&value)
                            )
                        })?;
                    if order.order_id.as_bytes() != key.as_slice()
                        || order.status != "processing"
                        || order.preparation_time != preparation_seconds(&order.coffee_type)
                        || order.preparation_time == 0
                    {
                        bail!("a wrong output: {}", String::from_utf8_lossy(&value));
                    }
                    self.ids.insert(key);
                }
                if self.records > expected.valid {
                    bail!(
                        "{} outputs, {} distinct, for {} valid orders: a fast wrong answer is a failure",
                        self.records,
                        self.ids.len(),
                        expected.valid
                    );
                }
                Ok(self.records == expected.valid && self.ids.len() as u64 == expected.valid)
            }
            JobKind::Stateful => {
                let mut right = 0;
                for (key, value) in &self.latest {
                    let customer = String::from_utf8_lossy(key);
                    let stats: Stats = serde_json::from_slice(value).with_context(|| {
                        format!(
                            "an output is not a count and sum: {}",
                            String::from_utf8_lossy(value)
                        )
                    })?;
                    let Some(&(orders, seconds)) = expected.per_customer.get(customer.as_ref())
                    else {
                        bail!("an output for an unknown customer {customer:?}");
                    };
                    if stats.orders > orders {
                        bail!(
                            "{customer}: {} orders counted, {orders} placed: a fast wrong answer is a failure",
                            stats.orders
                        );
                    }
                    if stats.orders == orders {
                        if stats.preparation_seconds != seconds {
                            bail!(
                                "{customer}: preparation {} s, expected {seconds} s",
                                stats.preparation_seconds
                            );
                        }
                        right += 1;
                    }
                }
                Ok(right == expected.per_customer.len())
            }
            JobKind::Windowed => {
                let mut right = 0;
                for (key, value) in &self.latest {
                    let window = String::from_utf8_lossy(key);
                    let count: u64 = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .with_context(|| {
                            format!("{window}: the count {value:?} is not a number")
                        })?;
                    let Some(&want) = expected.per_window.get(window.as_ref()) else {
                        bail!("an output for an unknown window {window:?}");
                    };
                    if count > want {
                        bail!(
                            "{window}: {count} orders counted, {want} placed: a fast wrong answer is a failure"
                        );
                    }
                    if count == want {
                        right += 1;
                    }
                }
                Ok(right == expected.per_window.len())
            }
        }
    }
}

/// The next message, or `None` once none has come for `idle`.
fn poll_until_idle(
    consumer: &BaseConsumer,
    idle: Duration,
    deadline: Instant,
) -> anyhow::Result<Option<rdkafka::message::BorrowedMessage<'_>>> {
    let idle_until = Instant::now() + idle;
    while Instant::now() < idle_until {
        if Instant::now() > deadline {
            bail!("reading an output back took too long");
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(error)) => return Err(error.into()),
            Some(Ok(message)) => return Ok(Some(message)),
        }
    }
    Ok(None)
}

fn latency_run(
    provisioned: &Provisioned,
    system: System,
    bootstrap: &str,
    app_id: &str,
    args: &AllArgs,
    rate: u64,
    work_dir: &std::path::Path,
) -> anyhow::Result<Latencies> {
    let cluster = Cluster::kafka(bootstrap);
    let input = format!("{app_id}-in");
    let output = format!("{app_id}-out");
    cluster.create_topic(&input, args.partitions, &[])?;
    cluster.create_topic(
        &output,
        args.partitions,
        &[("message.timestamp.type", "LogAppendTime")],
    )?;
    let state_dir = work_dir.join(app_id);
    std::fs::create_dir_all(&state_dir)?;
    let mut peer = Peer::start(
        provisioned,
        system,
        &Launch {
            bootstrap,
            job: JobKind::Stateless,
            eos: false,
            input: &input,
            output: &output,
            app_id,
            state_dir: &state_dir,
        },
        work_dir.join(format!("{app_id}.log")),
    )?;
    let result = open_loop(&mut peer, bootstrap, &input, &output, args, rate);
    peer.stop();
    std::fs::remove_dir_all(&state_dir).ok();
    result
}

fn open_loop(
    peer: &mut Peer,
    bootstrap: &str,
    input: &str,
    output: &str,
    args: &AllArgs,
    rate: u64,
) -> anyhow::Result<Latencies> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let values: Vec<Vec<u8>> = crate::orders::generate(1_000, 1_000, args.seed)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| {
            serde_json::from_slice::<crate::orders::Order>(v)
                .is_ok_and(|o| crate::orders::is_valid(&o))
        })
        .collect();
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let output_count = || -> anyhow::Result<u64> {
        Ok((0..args.partitions)
            .map(|p| {
                watcher
                    .fetch_watermarks(output, p, Duration::from_secs(5))
                    .map(|w| w.1)
            })
            .sum::<Result<i64, _>>()? as u64)
    };
    let send = |key: &str, value: &[u8], ts: i64| -> anyhow::Result<()> {
        let mut record = BaseRecord::to(input).key(key).payload(value).timestamp(ts);
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    };

    // Prime: until the system answers, so its start-up is not measured.
    let primed = 100u64;
    let deadline = Instant::now() + Duration::from_secs(180);
    for i in 0..primed {
        send(
            &format!("warm-{i}"),
            &values[i as usize % values.len()],
            unix_ms(),
        )?;
    }
    producer.flush(Duration::from_secs(30))?;
    while output_count()? < primed {
        peer.check_alive()?;
        if Instant::now() > deadline {
            bail!("no output within 180 s of the first records");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // Open loop: record k is due at start + k / rate, whatever happens to
    // the ones before it; its key carries that due time.
    let total = rate * (args.latency_warmup + args.latency_seconds);
    let measured_from_us = args.latency_warmup as i64 * 1_000_000;
    let start = Instant::now();
    let start_us = unix_ms() * 1000;
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let at_us = start_us + (sent as f64 * 1e6 / rate as f64) as i64;
            send(
                &format!("lat-{at_us}-{sent}"),
                &values[sent as usize % values.len()],
                at_us / 1000,
            )?;
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(500));
    }
    let behind =
        start.elapsed().as_secs_f64() - (args.latency_warmup + args.latency_seconds) as f64;
    producer.flush(Duration::from_secs(60))?;
    if behind > 1.0 {
        bail!(
            "the load generator fell {behind:.1} s behind its schedule: the machine is overloaded"
        );
    }
    let wait_until = Instant::now() + Duration::from_secs(120);
    while output_count()? < primed + total {
        peer.check_alive()?;
        if Instant::now() > wait_until {
            bail!(
                "only {} of {} records came out within 120 s of the end of the load: it cannot keep up with {rate} records/s",
                output_count()?.saturating_sub(primed),
                total
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Read the output back; latency = LogAppendTime - due time.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{output}-reader"))
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..args.partitions {
        list.add_partition_offset(output, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut seen = 0u64;
    let read_deadline = Instant::now() + Duration::from_secs(300);
    while seen < total
        && let Some(message) = poll_until_idle(&consumer, Duration::from_secs(10), read_deadline)?
    {
        let key = message
            .key()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let Some(at_us) = key
            .strip_prefix("lat-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|us| us.parse::<i64>().ok())
        else {
            continue;
        };
        seen += 1;
        let Timestamp::LogAppendTime(arrived) = message.timestamp() else {
            bail!("an output without LogAppendTime");
        };
        if at_us - start_us >= measured_from_us {
            latencies.push((arrived * 1000 - at_us) as f64 / 1000.0);
        }
    }
    if seen != total {
        bail!("{seen} outputs for {total} inputs: a fast wrong answer is a failure");
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Latencies {
        p50: pick(0.5),
        p99: pick(0.99),
        p999: pick(0.999),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        measured: latencies.len() as u64,
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} vCPU ({cpu}), {memory}, Linux {kernel}")
}

fn rustc_version() -> String {
    std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".into(),
    }
}

fn report(
    args: &AllArgs,
    provisioned: &Provisioned,
    runs: &[Run],
    latency_runs: &[LatencyRun],
    load_before: &str,
    load_after: &str,
    mean_value_bytes: usize,
) -> String {
    let mut out = String::new();
    let command: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(
        out,
        "### Side by side: {} records per data set\n",
        args.records
    );
    let _ = writeln!(
        out,
        "```sh\ncargo run --release -p bench -- {}\n```\n",
        command.join(" ")
    );
    let _ = writeln!(
        out,
        "- Machine: {}; 1-minute load average {load_before} before the run, {load_after} after.",
        machine()
    );
    let _ = writeln!(
        out,
        "- Broker: Apache Kafka 4.4.0 (KRaft, single node, 512 MiB heap) on the same machine; {} partitions; {} customers; mean order {mean_value_bytes} B of JSON; seed {}.",
        args.partitions, args.customers, args.seed
    );
    let _ = write!(out, "- Versions: {}", rustc_version());
    for (name, version) in &provisioned.versions {
        let _ = write!(out, "; {name} {version}");
    }
    let _ = writeln!(out, ".\n");

    let _ = writeln!(
        out,
        "| job | system | records/s | app CPU-s per 1M | records per app CPU-s | broker CPU-s per 1M | peak RSS MiB | output check |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---|");
    for run in runs {
        match &run.outcome {
            Ok(f) => {
                let per_million = |cpu: f64| cpu / run.records as f64 * 1e6;
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.2} | {:.0} | {} | {:.0} | ok ({} outputs) |",
                    run.scenario.label(),
                    run.system.label(),
                    f.rate(run.records),
                    per_million(f.app_cpu),
                    f.per_cpu_second(run.records),
                    f.broker_cpu
                        .map_or("n/a".into(), |b| format!("{:.2}", per_million(b))),
                    f.peak_rss_kib as f64 / 1024.0,
                    f.outputs
                );
            }
            Err(error) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | – | – | – | – | – | **FAILED**: {} |",
                    run.scenario.label(),
                    run.system.label(),
                    error.replace('|', "/")
                );
            }
        }
    }

    // Ratios per scenario: ours against the best of each peer.
    let figure = |scenario: Scenario, systems: &[System], f: &dyn Fn(&Figures, u64) -> f64| {
        runs.iter()
            .filter(|r| r.scenario == scenario && systems.contains(&r.system))
            .filter_map(|r| r.outcome.as_ref().ok().map(|x| f(x, r.records)))
            .reduce(f64::max)
    };
    let rate = |x: &Figures, n: u64| x.rate(n);
    let per_cpu = |x: &Figures, n: u64| x.per_cpu_second(n);
    let ks = [System::KsDefault, System::KsLatency];
    let _ = writeln!(
        out,
        "\nRatios (ours ÷ peer; for Kafka Streams, the better of its two profiles):\n"
    );
    let _ = writeln!(
        out,
        "| job | ÷ Kafka Streams, records/s | ÷ Kafka Streams, per CPU-s | ÷ Quix, records/s | ÷ Quix, per CPU-s | ÷ hand loop, records/s | ÷ hand loop, per CPU-s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    let mut scenarios: Vec<Scenario> = Vec::new();
    for run in runs {
        if !scenarios.contains(&run.scenario) {
            scenarios.push(run.scenario);
        }
    }
    for scenario in &scenarios {
        let ours_rate = figure(*scenario, &[System::Ours], &rate);
        let ours_cpu = figure(*scenario, &[System::Ours], &per_cpu);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            scenario.label(),
            ratio(ours_rate, figure(*scenario, &ks, &rate)),
            ratio(ours_cpu, figure(*scenario, &ks, &per_cpu)),
            ratio(ours_rate, figure(*scenario, &[System::Quix], &rate)),
            ratio(ours_cpu, figure(*scenario, &[System::Quix], &per_cpu)),
            ratio(ours_rate, figure(*scenario, &[System::Hand], &rate)),
            ratio(ours_cpu, figure(*scenario, &[System::Hand], &per_cpu)),
        );
    }

    if !latency_runs.is_empty() {
        let _ = writeln!(
            out,
            "\nStateless end-to-end latency (record create time → LogAppendTime in the output topic), fixed-rate open loop, {} s measured after {} s of warm-up; before the first run, {} s of unmeasured load through the hand-written loop warmed the broker up:\n",
            args.latency_seconds, args.latency_warmup, args.broker_warmup
        );
        let _ = writeln!(
            out,
            "| system | offered records/s | p50 ms | p99 ms | p99.9 ms | max ms | records measured |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for run in latency_runs {
            match &run.outcome {
                Ok(l) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                        run.system.label(),
                        run.rate,
                        l.p50,
                        l.p99,
                        l.p999,
                        l.max,
                        l.measured
                    );
                }
                Err(error) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | – | – | – | – | **FAILED**: {} |",
                        run.system.label(),
                        run.rate,
                        error.replace('|', "/")
                    );
                }
            }
        }
    }

    // The issue's goals, judged from the figures above.
    let p99 = |system: System| {
        latency_runs
            .iter()
            .find(|r| r.system == system)
            .and_then(|r| r.outcome.as_ref().ok().map(|l| l.p99))
    };
    let rss = |systems: &[System]| {
        runs.iter()
            .filter(|r| systems.contains(&r.system))
            .filter_map(|r| r.outcome.as_ref().ok().map(|f| f.peak_rss_kib as f64))
            .reduce(f64::max)
    };
    let quix_per_core = scenarios
        .iter()
        .filter_map(|s| {
            figure(*s, &[System::Ours], &per_cpu)
                .zip(figure(*s, &[System::Quix], &per_cpu))
                .map(|(a, b)| a / b)
        })
        .reduce(f64::min);
    let eos = figure(Scenario::StatefulEos, &[System::Ours], &rate)
        .zip(figure(Scenario::Stateful, &[System::Ours], &rate))
        .map(|(eos, alos)| 1.0 - eos / alos);
    let goal = |out: &mut String,
                name: &str,
                value: Option<f64>,
                ok: &dyn Fn(f64) -> bool,
                shown: &dyn Fn(f64) -> String| {
        let (verdict, text) = match value {
            Some(v) => (if ok(v) { "met" } else { "**missed**" }, shown(v)),
            None => ("not measured", "–".into()),
        };
        let _ = writeln!(out, "| {name} | {text} | {verdict} |");
    };
    let times = |v: f64| format!("{v:.2}×");
    let _ = writeln!(
        out,
        "\nGoals:\n\n| goal | measured | verdict |\n|---|---:|---|"
    );
    let ratio_of = |s: Scenario, peer: &[System], f: &dyn Fn(&Figures, u64) -> f64| {
        figure(s, &[System::Ours], f)
            .zip(figure(s, peer, f))
            .map(|(a, b)| a / b)
    };
    goal(
        &mut out,
        "stateless ≥ 0.8× the hand-written loop (records/s)",
        ratio_of(Scenario::Stateless, &[System::Hand], &rate),
        &|v| v >= 0.8,
        &times,
    );
    goal(
        &mut out,
        "stateless ≥ 2× Kafka Streams in records per CPU-second",
        ratio_of(Scenario::Stateless, &ks, &per_cpu),
        &|v| v >= 2.0,
        &times,
    );
    goal(
        &mut out,
        "stateful ≥ 0.5× the hand-written loop (records/s)",
        ratio_of(Scenario::Stateful, &[System::Hand], &rate),
        &|v| v >= 0.5,
        &times,
    );
    goal(
        &mut out,
        "stateful ≥ 1.5× Kafka Streams (records/s)",
        ratio_of(Scenario::Stateful, &ks, &rate),
        &|v| v >= 1.5,
        &times,
    );
    goal(
        &mut out,
        "≥ 5× Quix Streams per core (worst job)",
        quix_per_core,
        &|v| v >= 5.0,
        &times,
    );
    goal(
        &mut out,
        "exactly once costs ≤ 25 % of at-least-once throughput",
        eos,
        &|v| v <= 0.25,
        &|v| format!("{:.0} %", v * 100.0),
    );
    goal(
        &mut out,
        "stateless p99 ≤ 25 ms at the offered load",
        p99(System::Ours),
        &|v| v <= 25.0,
        &|v| format!("{v:.1} ms"),
    );
    goal(
        &mut out,
        "stateless p99 ≤ ½ Kafka Streams' latency-matched p99",
        p99(System::Ours)
            .zip(p99(System::KsLatency))
            .map(|(a, b)| a / b),
        &|v| v <= 0.5,
        &times,
    );
    goal(
        &mut out,
        "peak RSS ≤ ¼ of the Kafka Streams JVM's (largest of each)",
        rss(&[System::Ours]).zip(rss(&ks)).map(|(a, b)| a / b),
        &|v| v <= 0.25,
        &times,
    );
    out
}

const BEGIN: &str = "<!-- bench-all:begin -->";
const END: &str = "<!-- bench-all:end -->";

fn write_docs(path: &std::path::Path, report: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{BEGIN}\n{report}\n{END}");
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if end > begin => {
            format!("{}{section}{}", &text[..begin], &text[end + END.len()..])
        }
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(path, new)?;
    Ok(())
}
