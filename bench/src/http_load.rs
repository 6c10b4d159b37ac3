//! HTTP ingest: `POST /order` on the producer, with `acks=all` on the real
//! broker, next to the same endpoint with Kafka stubbed out (the HTTP
//! ceiling).
//!
//! The load generator is a minimal HTTP/1.1 client over keep-alive
//! connections (one request in flight per connection, like wrk), in the
//! same process as the producer but on its own runtime threads, so the CPU
//! of each side can be read from `/proc/self/task`. Closed loop: each
//! client sends its next request when the previous one is answered. Open
//! loop: each client sends on a fixed schedule (rate / clients) and
//! latency is measured from the scheduled time, so a stalled server is not
//! hidden by clients that wait for it (coordinated omission).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use engine::Cluster;
use gateway::{Producer, ProducerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cpu_seconds;

const DRINKS: [&str; 4] = ["Latte", "Espresso", "Cappuccino", "Americano"];

/// One run's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) clients: Vec<usize>,
    pub(crate) rates: Vec<u64>,
    pub(crate) seconds: u64,
    pub(crate) warmup: u64,
    pub(crate) broker_warmup: u64,
    pub(crate) partitions: i32,
    pub(crate) linger_ms: Vec<u64>,
    pub(crate) server_threads: usize,
    pub(crate) client_threads: usize,
    pub(crate) only: Option<String>,
}

/// One measurement.
struct Row {
    kafka: String,
    clients: usize,
    /// Offered rate (open loop), or `None` for closed loop.
    rate: Option<u64>,
    ok_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    ok: u64,
    other: BTreeMap<u16, u64>,
    cpu: Cpu,
}

/// CPU seconds per second of wall time, by thread group.
#[derive(Default, Clone, Copy)]
struct Cpu {
    server: f64,
    kafka_client: f64,
    load: f64,
    broker: Option<f64>,
    /// Everything else on the machine (other processes), which a clean
    /// measurement keeps near zero.
    others: f64,
}

pub(crate) fn run(settings: &Settings) -> anyhow::Result<()> {
    let (bootstrap, broker_pid) = crate::broker()?;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.server_threads)
        .thread_name("srv")
        .enable_all()
        .build()?;
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .thread_name("load")
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut first_kafka = true;
    let mut variants = vec![None];
    variants.extend(settings.linger_ms.iter().copied().map(Some));
    for linger in variants {
        let real = linger.is_some();
        if settings
            .only
            .as_deref()
            .is_some_and(|only| (only == "kafka") != real)
        {
            continue;
        }
        let kafka = linger.map_or("stubbed (HTTP ceiling)".to_owned(), |linger| {
            format!("acks=all, linger.ms={linger}")
        });
        let topic = format!("bench-ingest-{}-{}", std::process::id(), rows.len());
        let config = ProducerConfig {
            server_port: 0,
            grpc_port: 0,
            bind_host: "127.0.0.1".into(),
            kafka_brokers: vec![bootstrap.clone()],
            kafka_topic: topic.clone(),
            kafka_linger_ms: linger.unwrap_or(1),
            // No reads in this benchmark: nothing listens there.
            consumer_grpc_address: "http://127.0.0.1:9".into(),
            ..ProducerConfig::default()
        };
        let registry = prometheus::Registry::new();
        let producer = if real {
            Cluster::kafka(&bootstrap).create_topic(&topic, settings.partitions, &[])?;
            server_runtime.block_on(Producer::bind(config, None, &registry))?
        } else {
            server_runtime.block_on(Producer::bind_http_ceiling(config, &registry))?
        };
        let addr = producer.http_addr();
        let first_row = rows.len();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = server_runtime.spawn(producer.run(async {
            let _ = stopped.await;
        }));
        if real && first_kafka {
            first_kafka = false;
            if settings.broker_warmup > 0 {
                eprintln!("warming the broker up for {} s ...", settings.broker_warmup);
                let warm = Settings {
                    seconds: settings.broker_warmup,
                    warmup: 0,
                    ..settings.clone()
                };
                measure(&client_runtime, addr, "warm-up", 256, None, &warm, None)?;
            }
        }
        let mut plans: Vec<(usize, Option<u64>)> =
            settings.clients.iter().map(|&c| (c, None)).collect();
        for &rate in &settings.rates {
            plans.push((*settings.clients.iter().max().unwrap_or(&64), Some(rate)));
        }
        for (clients, rate) in plans {
            let row = measure(
                &client_runtime,
                addr,
                &kafka,
                clients,
                rate,
                settings,
                broker_pid.filter(|_| real),
            )?;
            eprintln!(
                "{kafka}, {clients} clients, {}: {:.0} ok/s, p50 {:.2} ms, p99 {:.2} ms, other {:?}",
                rate.map_or("closed loop".to_owned(), |r| format!("open loop at {r}/s")),
                row.ok_per_second,
                row.p50_ms,
                row.p99_ms,
                row.other
            );
            rows.push(row);
        }
        if real {
            let sent = prometheus::TextEncoder::new()
                .encode_to_string(&registry.gather())
                .unwrap_or_default();
            let acknowledged: u64 = sent
                .lines()
                .find(|line| line.starts_with("kafka_messages_sent_total"))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let answered: u64 = rows[first_row..].iter().map(|r| r.ok).sum();
            // Every 200 in a window was acknowledged (warm-up requests too).
            if acknowledged < answered {
                bail!(
                    "{answered} orders answered 200 but only {acknowledged} acknowledged by Kafka"
                );
            }
        }
        let _ = stop.send(());
        server_runtime.block_on(server).context("producer task")??;
    }
    print_table(&rows, settings);
    Ok(())
}

/// Runs `clients` connections for warm-up + measured seconds and keeps the
/// requests that started and ended inside the measured window.
fn measure(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    kafka: &str,
    clients: usize,
    rate: Option<u64>,
    settings: &Settings,
    broker_pid: Option<u32>,
) -> anyhow::Result<Row> {
    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + Duration::from_secs(settings.warmup);
    let window_end = window_start + Duration::from_secs(settings.seconds);
    let interval = rate.map(|rate| Duration::from_secs_f64(clients as f64 / rate as f64));
    type Sample = (Instant, [f64; 3], Option<f64>, f64, f64);
    let cpu_at = |when: Instant| -> anyhow::Result<Sample> {
        std::thread::sleep(when.saturating_duration_since(Instant::now()));
        Ok((
            Instant::now(),
            thread_cpu()?,
            broker_pid.map(|pid| cpu_seconds(Some(pid))).transpose()?,
            cpu_seconds(None)?,
            machine_busy_seconds()?,
        ))
    };
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            runtime.spawn(client_loop(
                addr,
                client,
                start,
                window_start,
                window_end,
                interval,
            ))
        })
        .collect();
    let (t0, cpu0, broker0, process0, machine0) = cpu_at(window_start)?;
    let (t1, cpu1, broker1, process1, machine1) = cpu_at(window_end)?;
    let mut latencies = Vec::new();
    let mut other = BTreeMap::new();
    for task in tasks {
        let (mut samples, statuses) = runtime.block_on(task)??;
        latencies.append(&mut samples);
        for (status, count) in statuses {
            *other.entry(status).or_insert(0) += count;
        }
    }
    let wall = (t1 - t0).as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    let ok = latencies.len() as u64;
    Ok(Row {
        kafka: kafka.to_owned(),
        clients,
        rate,
        ok_per_second: ok as f64 / settings.seconds as f64,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        p999_ms: percentile(0.999),
        max_ms: latencies.last().map_or(f64::NAN, |us| *us as f64 / 1000.0),
        ok,
        other,
        cpu: Cpu {
            server: (cpu1[0] - cpu0[0]) / wall,
            kafka_client: (cpu1[1] - cpu0[1]) / wall,
            load: (cpu1[2] - cpu0[2]) / wall,
            broker: broker0.zip(broker1).map(|(a, b)| (b - a) / wall),
            others: ((machine1 - machine0)
                - (process1 - process0)
                - broker0.zip(broker1).map_or(0.0, |(a, b)| b - a))
                / wall,
        },
    })
}

/// One connection's requests: latencies (µs) of the 200s inside the window,
/// and counts of other statuses there.
async fn client_loop(
    addr: SocketAddr,
    client: usize,
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    interval: Option<Duration>,
) -> anyhow::Result<(Vec<u32>, BTreeMap<u16, u64>)> {
    let start = tokio::time::Instant::from_std(start);
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut latencies = Vec::new();
    let mut other = BTreeMap::new();
    let mut buffer = Vec::with_capacity(4096);
    let mut request = Vec::with_capacity(256);
    let mut body = String::with_capacity(128);
    // Spread the clients' schedules over one interval.
    let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(client as f64 / 997.0 % 1.0));
    tokio::time::sleep_until(start + offset).await;
    for n in 0u64.. {
        let planned = match interval {
            Some(interval) => {
                let at = start + offset + interval.mul_f64(n as f64);
                tokio::time::sleep_until(at).await;
                at.into_std()
            }
            None => Instant::now(),
        };
        if planned >= window_end {
            break;
        }
        body.clear();
        write!(
            body,
            r#"{{"customer_name":"customer-{client}-{n}","coffee_type":"{}"}}"#,
            DRINKS[(n as usize + client) % DRINKS.len()]
        )?;
        request.clear();
        write!(
            request,
            "POST /order HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        stream.write_all(&request).await?;
        let status = read_response(&mut stream, &mut buffer).await?;
        let done = Instant::now();
        if planned >= window_start && done <= window_end {
            if status == 200 {
                latencies.push(u32::try_from((done - planned).as_micros()).unwrap_or(u32::MAX));
            } else {
                *other.entry(status).or_insert(0) += 1;
            }
        }
    }
    Ok((latencies, other))
}

/// Reads one response (headers and a `content-length` body); returns its
/// status.
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<u16> {
    buffer.clear();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end])?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .context("no status")?;
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .context("no content-length")?;
            let total = end + 4 + length;
            while buffer.len() < total {
                read_more(stream, buffer).await?;
            }
            return Ok(status);
        }
        read_more(stream, buffer).await?;
    }
}

async fn read_more(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<()> {
    buffer.reserve(4096);
    // Straight into the buffer's spare capacity: no zeroing, no copy.
    if stream.read_buf(buffer).await? == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

/// Busy CPU seconds of the whole machine (all but idle and I/O wait).
fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .context("empty /proc/stat")?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    Ok((total - idle) / crate::clock_ticks())
}

/// CPU seconds of this process's threads: the producer's runtime (`srv`),
/// its Kafka client (librdkafka's `rdk:` threads and rdkafka's polling
/// thread), and the load generator (`load`).
fn thread_cpu() -> anyhow::Result<[f64; 3]> {
    let mut groups = [0.0; 3];
    for entry in std::fs::read_dir("/proc/self/task")? {
        let path = entry?.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        let Some((name, rest)) = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
        else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let seconds = (ticks(11) + ticks(12)) / crate::clock_ticks();
        let group = if name.starts_with("srv") {
            0
        } else if name.starts_with("rdk:") || name.starts_with("producer pol") {
            1
        } else if name.starts_with("load") {
            2
        } else {
            continue;
        };
        groups[group] += seconds;
    }
    Ok(groups)
}

fn print_table(rows: &[Row], settings: &Settings) {
    println!(
        "| Kafka | clients | load | orders/s (200) | p50 ms | p99 ms | p99.9 ms | max ms | other answers \
         | producer CPU µs/order | broker CPU µs/order | load generator CPU µs/order | other processes (cores) |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for row in rows {
        let other = if row.other.is_empty() {
            "none".to_owned()
        } else {
            row.other
                .iter()
                .map(|(status, n)| format!("{n}× {status}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let per_order = |cores: f64| cores / row.ok_per_second.max(1.0) * 1e6;
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {} | {:.1} | {:.2} |",
            row.kafka,
            row.clients,
            row.rate
                .map_or("closed loop".to_owned(), |r| format!("open, {r}/s")),
            row.ok_per_second,
            row.p50_ms,
            row.p99_ms,
            row.p999_ms,
            row.max_ms,
            other,
            per_order(row.cpu.server + row.cpu.kafka_client),
            row.cpu
                .broker
                .map_or("n/a".to_owned(), |b| format!("{:.1}", per_order(b))),
            per_order(row.cpu.load),
            row.cpu.others,
        );
    }
    println!();
    println!(
        "{} s measured after {} s warm-up per row; producer CPU is its runtime threads plus \
         librdkafka's; {} server threads, {} load threads, {} partitions.",
        settings.seconds,
        settings.warmup,
        settings.server_threads,
        settings.client_threads,
        settings.partitions
    );
}
