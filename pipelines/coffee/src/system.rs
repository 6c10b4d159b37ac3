//! The whole coffee system in one process — streams application, query
//! service, producer, API gateway and barista — as `coffee all` runs it
//! and as the end-to-end tests start it.
//!
//! Services start in dependency order, each told where the others
//! actually listen (ports 0 pick free ones). One stop signal reaches them
//! all; [`System::wait`] returns as soon as any of them stops, so a caller
//! can stop the rest.

use std::net::SocketAddr;
use std::time::Duration;

use engine::Cluster;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::warn;

use crate::config::Config;
use crate::service;

/// Why the system stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// A pipeline service failed.
    #[error("{service}: {source}")]
    Pipeline {
        /// Which one.
        service: &'static str,
        /// Its error.
        #[source]
        source: service::ServiceError,
    },
    /// The producer or the gateway failed.
    #[error("{service}: {source}")]
    Ingest {
        /// Which one.
        service: &'static str,
        /// Its error.
        #[source]
        source: gateway::GatewayError,
    },
    /// A service stopped before it had started.
    #[error("{0} stopped while starting")]
    Start(&'static str),
    /// A service panicked.
    #[error("{0}")]
    Panicked(String),
    /// Local state could not be prepared.
    #[error("state directory: {0}")]
    State(#[source] std::io::Error),
}

/// Where each service of a running system listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// The API gateway's HTTP.
    pub gateway: SocketAddr,
    /// The producer's HTTP.
    pub producer_http: SocketAddr,
    /// The producer's gRPC.
    pub producer_grpc: SocketAddr,
    /// The query service's gRPC.
    pub query: SocketAddr,
    /// The streams application's `/metrics`.
    pub streams_metrics: SocketAddr,
    /// The barista's `/metrics`.
    pub barista_metrics: SocketAddr,
}

type Outcome = (&'static str, Result<(), SystemError>);

/// A running system.
pub struct System {
    /// Where its services listen.
    pub addresses: Addresses,
    /// The cluster it runs on.
    pub cluster: Cluster,
    services: JoinSet<Outcome>,
    stop: watch::Sender<bool>,
    /// The producer's and the gateway's metrics.
    pub registries: (prometheus::Registry, prometheus::Registry),
    _scratch: Option<tempfile::TempDir>,
}

impl System {
    /// Starts every service of `config`, on the embedded cluster when it
    /// names no brokers.
    pub async fn start(mut config: Config) -> Result<Self, SystemError> {
        let cluster = config
            .kafka
            .connect()
            .map_err(|source| SystemError::Pipeline {
                service: "kafka",
                source,
            })?;
        let embedded = cluster
            .is_embedded()
            .then(|| cluster.bootstrap_servers().to_owned());
        // The embedded cluster starts empty every time: so does local
        // state, which would otherwise describe a cluster that is gone.
        let scratch = if cluster.is_embedded() {
            let scratch = tempfile::Builder::new()
                .prefix("coffee-state-")
                .tempdir()
                .map_err(SystemError::State)?;
            config.streams.state_dir = scratch.path().to_owned();
            Some(scratch)
        } else {
            None
        };
        let (stop, _) = watch::channel(false);
        let mut services = JoinSet::new();
        let stopped = |stop: &watch::Sender<bool>| {
            let mut stop = stop.subscribe();
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
            }
        };
        let pipeline =
            |service: &'static str| move |source| SystemError::Pipeline { service, source };
        let ingest = |service: &'static str| move |source| SystemError::Ingest { service, source };

        let (started_tx, started_rx) = oneshot::channel();
        {
            let (streams, kafka, menu, cluster, shutdown) = (
                config.streams.clone(),
                config.kafka.clone(),
                config.menu.clone(),
                cluster.clone(),
                stopped(&stop),
            );
            services.spawn(async move {
                let result = service::run_streams(
                    &streams,
                    &kafka,
                    &menu,
                    cluster,
                    shutdown,
                    Some(started_tx),
                )
                .await;
                ("streams", result.map_err(pipeline("streams")))
            });
        }
        let Ok(streams) = started_rx.await else {
            return Err(Self::failed_start(services, &stop, "streams").await);
        };
        let local = |address: SocketAddr| format!("http://127.0.0.1:{}", address.port());

        config.producer.consumer_grpc_address = local(streams.query);
        let producer_registry = prometheus::Registry::new();
        let producer = gateway::producer::Producer::bind(
            config.producer.clone(),
            embedded.as_deref(),
            &producer_registry,
        )
        .await
        .map_err(ingest("producer"))?;
        let (producer_http, producer_grpc) = (producer.http_addr(), producer.grpc_addr());
        let shutdown = stopped(&stop);
        services.spawn(async move {
            let result = producer.run(shutdown).await;
            ("producer", result.map_err(ingest("producer")))
        });

        config.gateway.producer_grpc_address = local(producer_grpc);
        config.gateway.consumer_grpc_address = local(streams.query);
        let gateway_registry = prometheus::Registry::new();
        let gateway = gateway::api::Gateway::bind(config.gateway.clone(), &gateway_registry)
            .await
            .map_err(ingest("gateway"))?;
        let gateway_http = gateway.http_addr();
        let shutdown = stopped(&stop);
        services.spawn(async move {
            let result = gateway.run(shutdown).await;
            ("gateway", result.map_err(ingest("gateway")))
        });

        let (barista_tx, barista_rx) = oneshot::channel();
        {
            let (barista, kafka, cluster, host, shutdown) = (
                config.barista.clone(),
                config.kafka.clone(),
                cluster.clone(),
                config.streams.query_host.clone(),
                stopped(&stop),
            );
            services.spawn(async move {
                let result = service::run_barista(
                    &barista,
                    &kafka,
                    &cluster,
                    &host,
                    shutdown,
                    Some(barista_tx),
                )
                .await;
                ("barista", result.map_err(pipeline("barista")))
            });
        }
        let Ok(barista_metrics) = barista_rx.await else {
            return Err(Self::failed_start(services, &stop, "barista").await);
        };
        Ok(Self {
            addresses: Addresses {
                gateway: gateway_http,
                producer_http,
                producer_grpc,
                query: streams.query,
                streams_metrics: streams.metrics,
                barista_metrics,
            },
            cluster,
            services,
            stop,
            registries: (producer_registry, gateway_registry),
            _scratch: scratch,
        })
    }

    /// Stops what started and returns the error of the service that did not.
    async fn failed_start(
        services: JoinSet<Outcome>,
        stop: &watch::Sender<bool>,
        which: &'static str,
    ) -> SystemError {
        match Self::stop_services(services, stop).await {
            Err(error) => error,
            Ok(()) => SystemError::Start(which),
        }
    }

    /// Waits until any service stops, and says which and how.
    pub async fn wait(&mut self) -> Outcome {
        match self.services.join_next().await {
            Some(Ok(outcome)) => outcome,
            Some(Err(error)) => ("a service", Err(SystemError::Panicked(error.to_string()))),
            None => ("every service", Ok(())),
        }
    }

    /// Stops every service gracefully (a minute at most); the first error wins.
    pub async fn stop(self) -> Result<(), SystemError> {
        Self::stop_services(self.services, &self.stop).await
    }

    async fn stop_services(
        mut services: JoinSet<Outcome>,
        stop: &watch::Sender<bool>,
    ) -> Result<(), SystemError> {
        let _ = stop.send(true);
        let mut outcome = Ok(());
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(finished) = services.join_next().await {
                let result = match finished {
                    Ok((_, result)) => result,
                    Err(error) => Err(SystemError::Panicked(error.to_string())),
                };
                if let Err(error) = result
                    && outcome.is_ok()
                {
                    outcome = Err(error);
                }
            }
        })
        .await;
        if drained.is_err() {
            warn!("Services did not stop within a minute.");
        }
        outcome
    }
}
