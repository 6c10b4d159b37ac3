//! `coffee`: the coffee-ordering system's services in one binary.
//!
//! ```text
//! coffee all                      # everything in one process (embedded Kafka unless KAFKA_BROKERS is set)
//! coffee producer | gateway | streams | consumer
//! coffee replay --from earliest   # reprocess the input from the start (or an RFC 3339 time)
//! coffee topology [--mermaid|--svg]  # print the coffee topology
//! ```
//!
//! Settings come from defaults < `--config`/`CONFIG_FILE` (TOML or YAML) <
//! environment variables < flags; see `docs/configuration.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use coffee::config::{Config, Layers, LogFormat, Service};
use coffee::service::{self, KafkaConfig};
use coffee::system::System;
use serde_json::Value;
use tracing::{error, info, warn};

/// The coffee-ordering system.
#[derive(Parser)]
#[command(name = "coffee", version, about)]
struct Cli {
    /// A config file, TOML or YAML (also `CONFIG_FILE`).
    #[arg(long, env = "CONFIG_FILE", global = true)]
    config: Option<PathBuf>,
    /// Sets any setting, highest of all layers: `--set section.key=value`
    /// (repeatable), e.g. `--set streams.num_stream_threads=2`.
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    set: Vec<String>,
    /// Kafka bootstrap servers, `host:port[,host:port]` (over `KAFKA_BROKERS`).
    #[arg(long, global = true)]
    brokers: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The producer: HTTP (3000) and gRPC (50051) in front of Kafka.
    Producer {
        /// The HTTP port (over `SERVER_PORT`).
        #[arg(long)]
        port: Option<u16>,
    },
    /// The API gateway: HTTP (8080) in front of the producer and the query service.
    Gateway {
        /// The HTTP port (over `SERVER_PORT`).
        #[arg(long)]
        port: Option<u16>,
    },
    /// The streams application and its query service (gRPC 50052).
    Streams,
    /// The barista: brews what the streams application accepts.
    Consumer {
        /// Brewing time = the menu's time × this (over `BARISTA_SPEED_FACTOR`).
        #[arg(long)]
        speed_factor: Option<f64>,
        /// Drinks made at once (over `BARISTA_WORKERS`).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Every service in one process; on an embedded in-memory Kafka
    /// cluster unless brokers are configured.
    All {
        /// Brewing time = the menu's time × this; `coffee all` brews ten
        /// times faster than real time unless told otherwise.
        #[arg(long)]
        speed_factor: Option<f64>,
    },
    /// Resets the streams application and reprocesses its input.
    Replay {
        /// `earliest`, or an RFC 3339 time such as `2026-01-01T08:00:00Z`.
        #[arg(long, default_value = "earliest")]
        from: String,
        /// The application to replay (over `KAFKA_APPLICATION_ID`).
        #[arg(long)]
        application_id: Option<String>,
    },
    /// Prints the coffee topology.
    Topology {
        /// Mermaid instead of text.
        #[arg(long, conflicts_with = "svg")]
        mermaid: bool,
        /// An SVG picture instead of text.
        #[arg(long)]
        svg: bool,
    },
}

/// The speed of `coffee all` when no layer sets one: a Latte in 6 s.
const DEMO_SPEED_FACTOR: f64 = 0.1;

impl Command {
    fn service(&self) -> Service {
        match self {
            Command::Producer { .. } => Service::Producer,
            Command::Gateway { .. } => Service::Gateway,
            Command::Streams => Service::Streams,
            Command::Consumer { .. } => Service::Consumer,
            Command::All { .. } | Command::Replay { .. } | Command::Topology { .. } => Service::All,
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut layers = Layers::new(cli.command.service());
    if let Some(path) = &cli.config {
        layers = layers.file(path)?;
    }
    layers = layers.env(|name| std::env::var(name).ok())?;
    if let Some(brokers) = &cli.brokers {
        let list: Vec<&str> = brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        layers = layers.flag("kafka.brokers", Value::from(list), "--brokers");
    }
    layers = match &cli.command {
        Command::Producer { port: Some(port) } => {
            layers.flag("producer.server_port", Value::from(*port), "--port")
        }
        Command::Gateway { port: Some(port) } => {
            layers.flag("gateway.server_port", Value::from(*port), "--port")
        }
        Command::Consumer {
            speed_factor,
            workers,
        } => {
            if let Some(speed) = speed_factor {
                layers = layers.flag(
                    "barista.speed_factor",
                    Value::from(*speed),
                    "--speed-factor",
                );
            }
            if let Some(workers) = workers {
                layers = layers.flag("barista.workers", Value::from(*workers), "--workers");
            }
            layers
        }
        Command::All { speed_factor } => match speed_factor {
            Some(speed) => layers.flag(
                "barista.speed_factor",
                Value::from(*speed),
                "--speed-factor",
            ),
            None if !layers.is_set("barista.speed_factor") => layers.flag(
                "barista.speed_factor",
                Value::from(DEMO_SPEED_FACTOR),
                "coffee all's demo speed",
            ),
            None => layers,
        },
        Command::Replay {
            application_id: Some(id),
            ..
        } => layers.flag(
            "streams.application_id",
            Value::from(id.as_str()),
            "--application-id",
        ),
        _ => layers,
    };
    for assignment in &cli.set {
        layers = layers.set(assignment)?;
    }
    Ok(layers.load()?)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(&cli) {
        Ok(config) => config,
        Err(error) => {
            report(&error);
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&anyhow::Error::from(error).context("starting the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(error = format!("{error:#}"), "Stopped with an error.");
            report(&error);
            ExitCode::FAILURE
        }
    }
}

fn report(error: &anyhow::Error) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "coffee: {error:#}");
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Topology { mermaid, svg } => {
            let topology = coffee::topology::build(&config.streams.topology(&config.menu), None)?;
            let description = topology.describe();
            let text = if mermaid {
                description.to_mermaid()
            } else if svg {
                description.to_svg()
            } else {
                description.to_string()
            };
            print(&text);
            Ok(())
        }
        Command::Producer { .. } => {
            require_brokers(&config.kafka, "producer")?;
            // Orders need their topic even before the streams application
            // first starts (it creates the rest).
            let (kafka, topic) = (config.kafka.clone(), config.producer.kafka_topic.clone());
            tokio::task::spawn_blocking(move || {
                let cluster = kafka.connect()?;
                service::ensure_topics(&cluster, &kafka, &[&topic])
            })
            .await
            .context("creating the orders topic")??;
            let registry = prometheus::Registry::new();
            gateway::producer::run_producer(
                config.producer,
                None,
                &registry,
                engine::shutdown::signal(),
            )
            .await
            .context("the producer")
        }
        Command::Gateway { .. } => {
            let registry = prometheus::Registry::new();
            gateway::api::run_gateway(config.gateway, &registry, engine::shutdown::signal())
                .await
                .context("the gateway")
        }
        Command::Streams => {
            require_brokers(&config.kafka, "streams")?;
            let cluster = config.kafka.connect()?;
            service::run_streams(
                &config.streams,
                &config.kafka,
                &config.menu,
                cluster,
                engine::shutdown::signal(),
                None,
            )
            .await
            .context("the streams application")
        }
        Command::Consumer { .. } => {
            require_brokers(&config.kafka, "consumer")?;
            let cluster = config.kafka.connect()?;
            service::run_barista(
                &config.barista,
                &config.kafka,
                &cluster,
                "0.0.0.0",
                engine::shutdown::signal(),
                None,
            )
            .await
            .context("the barista")
        }
        Command::Replay { from, .. } => replay(&config, &from).await,
        Command::All { .. } => run_all(config).await,
    }
}

fn require_brokers(kafka: &KafkaConfig, service: &str) -> anyhow::Result<()> {
    if kafka.brokers.is_empty() {
        bail!(
            "`coffee {service}` needs Kafka: set KAFKA_BROKERS (or --brokers). Only `coffee all` \
             runs on the embedded in-memory cluster, because its data lives inside one process."
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print(text: &str) {
    print!("{text}");
}

async fn replay(config: &Config, from: &str) -> anyhow::Result<()> {
    require_brokers(&config.kafka, "replay")?;
    let to: engine::reset::ResetTo = from.parse()?;
    let cluster = config.kafka.connect()?;
    let topology = coffee::topology::build(&config.streams.topology(&config.menu), None)?;
    let mut bar = engine::reset::ProgressBar::stderr();
    info!(
        application = config.streams.application_id,
        from, "Replaying."
    );
    let report = engine::reset::replay(
        topology,
        config.streams.engine(&config.kafka),
        cluster,
        to,
        |progress| {
            bar.draw(progress);
        },
    )
    .await
    .context("the replay")?;
    bar.finish(&report);
    Ok(())
}

/// Runs every service in this process until a shutdown signal, or until
/// one of them stops (the others are then stopped too).
async fn run_all(config: Config) -> anyhow::Result<()> {
    let speed = config.barista.barista.speed_factor;
    let latte = config
        .menu
        .find("Latte")
        .map(|(_, seconds)| f64::from(seconds) * speed);
    let mut system = System::start(config).await.context("starting coffee")?;
    let a = system.addresses;
    let kafka = if system.cluster.is_embedded() {
        "the embedded in-memory cluster (data is lost at exit)".to_owned()
    } else {
        system.cluster.bootstrap_servers().to_owned()
    };
    print(&format!(
        "coffee is running on {kafka}.\n\
         \x20 API gateway    http://localhost:{}  (POST /order, GET /orders, GET /order/{{id}}, POST /order/{{id}}/cancel)\n\
         \x20 producer       http://localhost:{}  gRPC localhost:{}\n\
         \x20 query service  gRPC localhost:{}\n\
         \x20 metrics        http://localhost:{}/metrics (gateway)  :{}/metrics (producer)  :{}/metrics (streams)  :{}/metrics (barista)\n\
         \x20 barista        speed factor {speed}{}\n\
         Try: curl -s -XPOST localhost:{}/order -H 'content-type: application/json' -d '{{\"customer_name\":\"John Doe\",\"coffee_type\":\"Latte\"}}'\n\
         Stop with Ctrl-C.\n",
        a.gateway.port(),
        a.producer_http.port(),
        a.producer_grpc.port(),
        a.query.port(),
        a.gateway.port(),
        a.producer_http.port(),
        a.streams_metrics.port(),
        a.barista_metrics.port(),
        latte.map_or_else(String::new, |s| format!(" (a Latte takes {s:.1} s)")),
        a.gateway.port(),
    ));
    tokio::select! {
        () = engine::shutdown::signal() => info!("Shutting down."),
        (name, result) = system.wait() => match result {
            Ok(()) => warn!(service = name, "A service stopped; stopping the others."),
            Err(error) => {
                error!(service = name, %error, "A service failed; stopping the others.");
                let _ = system.stop().await;
                return Err(error.into());
            }
        },
    }
    system.stop().await?;
    Ok(())
}
