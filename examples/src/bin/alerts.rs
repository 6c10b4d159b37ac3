//! Splits sensor readings into alerts and normal readings; malformed
//! readings go to the dead-letter topic instead of stopping the pipeline.
//!
//! Run it on the embedded in-memory cluster (nothing to install):
//!     cargo run --release -p examples --bin alerts
//! or on a broker:
//!     KAFKA_BROKERS=127.0.0.1:9092 cargo run --release -p examples --bin alerts

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Instant;

use clap::Parser;
use engine::serdes::{Json, Utf8};
use engine::{StreamsBuilder, Topology};
use serde::{Deserialize, Serialize};

/// Command-line options.
#[derive(Parser)]
struct Args {
    /// Readings to generate.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Temperature (°C) at and above which a reading is an alert.
    #[arg(long, default_value_t = 80.0)]
    threshold: f64,
    /// Print the topology (add --mermaid for a Mermaid chart) and exit.
    #[arg(long)]
    describe: bool,
    /// With --describe: print Mermaid instead of text.
    #[arg(long)]
    mermaid: bool,
}

/// A sensor reading.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}

/// An alert raised for a hot reading.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Alert {
    sensor: String,
    celsius: f64,
    over_by: f64,
}

fn topology(threshold: f64) -> engine::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder.dead_letter_topic("readings-dead-letters");
    let mut levels = builder
        .stream("readings", Utf8, Json::<Reading>::new())
        .filter(|_sensor, reading| reading.celsius.is_finite())
        .name("finite")
        .split("level")
        .branch("alert", move |_sensor, reading| {
            reading.celsius >= threshold
        })
        .default_branch("normal");
    if let Some(alerts) = levels.take("alert") {
        alerts
            .map_values(move |reading| Alert {
                over_by: reading.celsius - threshold,
                sensor: reading.sensor,
                celsius: reading.celsius,
            })
            .name("to-alert")
            .to("alerts", Utf8, Json::<Alert>::new());
    }
    if let Some(normal) = levels.take("normal") {
        normal.to("normal-readings", Utf8, Json::<Reading>::new());
    }
    builder.build()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topology = topology(args.threshold)?;
    if args.describe {
        let description = topology.describe();
        if args.mermaid {
            print!("{}", description.to_mermaid());
        } else {
            print!("{description}");
        }
        return Ok(());
    }
    examples::init_logging();
    let cluster = examples::cluster_from_env()?;
    examples::ensure_topics(
        &cluster,
        &[
            ("readings", 3),
            ("alerts", 3),
            ("normal-readings", 3),
            ("readings-dead-letters", 1),
        ],
    )?;

    // One reading in a hundred is malformed JSON: a poison pill.
    let readings: Vec<(String, Vec<u8>)> = (0..args.records)
        .map(|i| {
            let sensor = format!("sensor-{}", i % 50);
            let value = if i % 100 == 99 {
                b"{\"sensor\": \"broken".to_vec()
            } else {
                let celsius = 20.0 + ((i * 37) % 80) as f64;
                serde_json::to_vec(&Reading {
                    sensor: sensor.clone(),
                    celsius,
                })
                .unwrap_or_default()
            };
            (sensor, value)
        })
        .collect();
    let started = Instant::now();
    examples::produce_all(&cluster, "readings", readings).await?;

    // Every reading ends up in exactly one of the three topics.
    let topics = ["alerts", "normal-readings", "readings-dead-letters"];
    let outputs =
        examples::run_until_outputs(&cluster, "alerts-example", topology, &topics, args.records)
            .await?;

    let mut per_topic: BTreeMap<String, usize> = BTreeMap::new();
    for (topic, _, _, _) in &outputs {
        *per_topic.entry(topic.clone()).or_default() += 1;
    }
    println!(
        "Processed {} readings in {:.2?}:",
        args.records,
        started.elapsed()
    );
    for (topic, count) in &per_topic {
        println!("  {topic:<22} {count}");
    }
    if let Some((_, _, sensor, value)) = outputs.iter().find(|(topic, _, _, _)| topic == "alerts") {
        println!("An alert from {sensor}: {}", String::from_utf8_lossy(value));
    }
    Ok(())
}
