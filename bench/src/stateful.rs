//! The stateful job: count and sum of preparation time per customer (a
//! re-key through a repartition topic, then an aggregate with a changelog),
//! at least once and exactly once from the same input, then how fast a task
//! restores that state from its changelog into sled, and how much disk the
//! state takes next to the bytes it holds.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine::serdes::{Json, Utf8};
use engine::{Cluster, KafkaStreams, ProcessingGuarantee, StreamsBuilder, StreamsConfig, Topology};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};

use crate::orders::{MENU, Order};
use crate::{committed, cpu_seconds, load};

/// The aggregate per customer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    orders: u64,
    preparation_seconds: u64,
}

fn topology(input: &str, output: &str) -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Utf8, Json::<Order>::new())
        .group_by(
            |_id, order| order.customer_name.clone(),
            Utf8,
            Json::<Order>::new(),
        )
        .aggregate(
            "customer-stats",
            Json::<Stats>::new(),
            Stats::default,
            |_, order, stats| {
                let seconds = MENU
                    .iter()
                    .find(|(d, _)| *d == order.coffee_type)
                    .map_or(0, |(_, s)| *s);
                Stats {
                    orders: stats.orders + 1,
                    preparation_seconds: stats.preparation_seconds + u64::from(seconds),
                }
            },
        )
        .to_stream()
        .to(output, Utf8, Json::<Stats>::new());
    Ok(builder.build()?)
}

/// One run's figures.
struct Figures {
    label: String,
    seconds: f64,
    app_cpu: f64,
    broker_cpu: Option<f64>,
}

/// Runs both guarantees and the restore; prints a Markdown table.
pub(crate) fn run(
    bootstrap: &str,
    broker_pid: Option<u32>,
    records: u64,
    partitions: i32,
    customers: u64,
    seed: u64,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let cluster = Cluster::kafka(bootstrap);
    let id = std::process::id();
    let input = format!("bench-stateful-orders-{id}");
    cluster.create_topic(&input, partitions, &[])?;
    eprintln!("loading {records} orders into {input} ({partitions} partitions) ...");
    runtime.block_on(load(
        bootstrap,
        &input,
        crate::orders::generate(records, customers, seed),
    ))?;

    let mut figures = Vec::new();
    let mut restore_source = None;
    // (what, bytes of keys and values held, bytes on disk)
    let mut disk: Vec<(&str, u64, u64)> = Vec::new();
    for guarantee in [
        ProcessingGuarantee::AtLeastOnce,
        ProcessingGuarantee::ExactlyOnce,
    ] {
        let app = format!("bench-stateful-{guarantee:?}-{id}").to_lowercase();
        let output = format!("{app}-out");
        cluster.create_topic(&output, partitions, &[])?;
        let state_dir = tempfile_dir(&app)?;
        let mut config = StreamsConfig::new(&app).bootstrap_servers(Some(bootstrap));
        config.processing_guarantee = guarantee;
        config.state_dir = state_dir.clone();
        let streams =
            KafkaStreams::new(topology(&input, &output)?, config.clone(), cluster.clone())?;
        let queries = streams.queries();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = runtime.spawn(streams.run(async move {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        let (app0, broker0) = (
            cpu_seconds(None)?,
            broker_pid.map(|p| cpu_seconds(Some(p))).transpose()?,
        );
        // Done when every input is committed and every order is counted:
        // the aggregation reads a repartition topic, which under exactly
        // once trails the input by a commit (and ends with a transaction
        // marker, so its offsets never reach the log end).
        wait_committed(bootstrap, &app, &input, partitions)?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while counted(&queries)? < records {
            if Instant::now() > deadline {
                bail!("{guarantee:?}: not every order was counted in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (seconds, app1, broker1) = (
            started.elapsed().as_secs_f64(),
            cpu_seconds(None)?,
            broker_pid.map(|p| cpu_seconds(Some(p))).transpose()?,
        );
        // Correctness: the counts add up to every order, no more (a
        // duplicate under exactly once would push it past).
        let total = counted(&queries)?;
        let held = logical_bytes(&queries)?;
        let _ = stop.send(());
        runtime.block_on(handle)??;
        if total != records {
            bail!("{guarantee:?}: the counts add up to {total}, not {records}");
        }
        // Measured after a clean close: the write cache is written back
        // and sled flushed.
        if guarantee == ProcessingGuarantee::AtLeastOnce {
            disk.push((
                "customer stats after the run",
                held,
                disk_bytes(&state_dir)?,
            ));
        }
        figures.push(Figures {
            label: format!("{guarantee:?}"),
            seconds,
            app_cpu: app1 - app0,
            broker_cpu: broker1.zip(broker0).map(|(b, b0)| b - b0),
        });
        eprintln!("{guarantee:?}: {:.0} records/s", records as f64 / seconds);
        if guarantee == ProcessingGuarantee::AtLeastOnce {
            restore_source = Some((app, output, config, state_dir));
        }
    }

    // Restore: the at-least-once application again, its local state gone,
    // no new input: all the time goes into replaying the changelog. That
    // changelog holds every update of every customer (the aggregate logs
    // each step, and the active segment is never compacted): many records
    // per key.
    let (app, output, config, state_dir) = restore_source.context("no at-least-once run")?;
    std::fs::remove_dir_all(&state_dir).ok();
    let changelog = format!("{app}-customer-stats-changelog");
    let changelog_records = topic_size(bootstrap, &changelog, partitions)?;
    let updates = measure_restore(&runtime, topology(&input, &output)?, config, &cluster)?;

    // And a changelog of as many records with a key each, as compaction
    // leaves it: every record is a new key for the store.
    let app = format!("bench-stateful-distinct-{id}");
    let output = format!("{app}-out");
    cluster.create_topic(&output, partitions, &[])?;
    cluster.create_topic(
        &format!("{app}-customer-stats-changelog"),
        partitions,
        &[("cleanup.policy", "compact")],
    )?;
    eprintln!("loading {records} changelog records with distinct keys ...");
    let distinct_records: Vec<(String, Vec<u8>)> = (0..records)
        .map(|i| {
            let stats = Stats {
                orders: i % 50 + 1,
                preparation_seconds: (i % 50 + 1) * 120,
            };
            Ok((format!("customer-{i:08}"), serde_json::to_vec(&stats)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let distinct_held = distinct_records
        .iter()
        .map(|(key, value)| (key.len() + value.len()) as u64)
        .sum();
    runtime.block_on(load(
        bootstrap,
        &format!("{app}-customer-stats-changelog"),
        distinct_records,
    ))?;
    let mut config = StreamsConfig::new(&app).bootstrap_servers(Some(bootstrap));
    config.state_dir = tempfile_dir(&app)?;
    // Only the restore is measured: no input to process afterwards.
    config.auto_offset_reset = engine::OffsetReset::Latest;
    let distinct_dir = config.state_dir.clone();
    let distinct = measure_restore(&runtime, topology(&input, &output)?, config, &cluster)?;
    disk.push((
        "one record per key, restored",
        distinct_held,
        disk_bytes(&distinct_dir)?,
    ));
    std::fs::remove_dir_all(&distinct_dir).ok();

    println!(
        "| guarantee | records | seconds | records/s | app CPU-s per 1M | broker CPU-s per 1M |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for f in &figures {
        let per_million = |cpu: f64| cpu / records as f64 * 1e6;
        println!(
            "| {} | {records} | {:.2} | {:.0} | {:.2} | {} |",
            f.label,
            f.seconds,
            records as f64 / f.seconds,
            per_million(f.app_cpu),
            f.broker_cpu
                .map_or("n/a".to_owned(), |b| format!("{:.2}", per_million(b)))
        );
    }
    if let [alos, eos] = figures.as_slice() {
        println!();
        println!(
            "exactly once / at least once throughput: {:.2}x",
            alos.seconds / eos.seconds
        );
    }
    for (what, count, (from_start, proper)) in [
        ("many updates per key", changelog_records as u64, updates),
        ("one record per key", records, distinct),
    ] {
        println!(
            "restore, {what}: {count} changelog records in {from_start:.2} s from the start of \
             the application = {:.0} records/s; restore proper (first task assigned to last \
             record restored) {proper:.2} s = {:.0} records/s",
            count as f64 / from_start,
            count as f64 / proper
        );
    }
    for (what, held, on_disk) in disk {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        println!(
            "state on disk, {what}: {:.1} MiB for {:.1} MiB of keys and values ({:.1}x)",
            mib(on_disk),
            mib(held),
            on_disk as f64 / held.max(1) as f64
        );
    }
    Ok(())
}

/// The bytes of every key and value in the customer-stats store, as the
/// store holds them (the serdes' encodings).
fn logical_bytes(queries: &engine::queries::Queries) -> anyhow::Result<u64> {
    queries
        .range("customer-stats", None, None, &Utf8, &Json::<Stats>::new())?
        .iter()
        .map(|(key, stats)| Ok((key.len() + serde_json::to_vec(stats)?.len()) as u64))
        .sum()
}

/// What a directory takes on disk, as `du` counts it: allocated blocks,
/// not apparent sizes (sled's files may be sparse).
fn disk_bytes(dir: &std::path::Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;

    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            disk_bytes(&entry.path())?
        } else {
            metadata.blocks() * 512
        };
    }
    Ok(total)
}

/// Starts `topology` with an empty state directory and waits until its
/// stores have restored every record of their changelogs; returns the
/// seconds from the application's start and from the first task's
/// assignment (when its restore is planned, after start-up, topic checks
/// and joining the group) to the last record restored.
fn measure_restore(
    runtime: &tokio::runtime::Runtime,
    topology: Topology,
    config: StreamsConfig,
    cluster: &Cluster,
) -> anyhow::Result<(f64, f64)> {
    let changelog = format!("{}-customer-stats-changelog", config.application_id);
    let partitions = cluster
        .partition_counts(std::slice::from_ref(&changelog))?
        .get(&changelog)
        .copied()
        .with_context(|| format!("no changelog {changelog}"))?;
    let changelog_records = topic_size(cluster.bootstrap_servers(), &changelog, partitions)?;
    let registry = prometheus::Registry::new();
    let streams = KafkaStreams::new(topology, config, cluster.clone())?.with_metrics(&registry)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = runtime.spawn(streams.run(async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let family = |name: &str, gauge: bool| -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| {
                f.get_metric().iter().map(|m| {
                    if gauge {
                        m.get_gauge().get_value()
                    } else {
                        m.get_counter().get_value()
                    }
                })
            })
            .sum()
    };
    let mut replay_started = None;
    loop {
        let restored = family("engine_restored_records_total", false);
        if replay_started.is_none()
            && (restored > 0.0 || family("engine_restore_remaining_records", true) > 0.0)
        {
            replay_started = Some(Instant::now());
        }
        if restored as i64 >= changelog_records {
            break;
        }
        if Instant::now() > deadline {
            bail!("restore did not finish ({restored} of {changelog_records})");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let from_start = started.elapsed().as_secs_f64();
    let proper = replay_started.map_or(from_start, |t| t.elapsed().as_secs_f64());
    let _ = stop.send(());
    runtime.block_on(handle)??;
    Ok((from_start, proper))
}

/// Orders counted so far, over every customer.
fn counted(queries: &engine::queries::Queries) -> anyhow::Result<u64> {
    Ok(queries
        .range("customer-stats", None, None, &Utf8, &Json::<Stats>::new())?
        .iter()
        .map(|(_, stats)| stats.orders)
        .sum())
}

fn tempfile_dir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("bench-state-{name}"));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn topic_size(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let mut total = 0;
    for partition in 0..partitions {
        total += consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))?
            .1;
    }
    Ok(total)
}

/// Waits until the group has committed every input offset.
fn wait_committed(
    bootstrap: &str,
    group: &str,
    input: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .create()?;
    let mut ends = Vec::new();
    for partition in 0..partitions {
        ends.push(
            consumer
                .fetch_watermarks(input, partition, Duration::from_secs(10))?
                .1,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while committed(&consumer, input, partitions).unwrap_or_default() != ends {
        if Instant::now() > deadline {
            bail!("{group} did not commit all its input");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
