//! Test support: a real Apache Kafka broker for the tests of every crate.
//!
//! [`kafka()`] starts one single-node KRaft broker per test process, on a free
//! port, through the project's own `deploy/kafka/kafka.sh`, and hands it to
//! every test in that process. The broker is stopped, and its data directory
//! deleted, once the test process has exited — however it exited — by a
//! watchdog the script leaves behind.
//!
//! Tests never share names: [`unique_name`] gives each topic and group a name
//! no other test (in this process or another) uses, and [`Kafka::create_topic`]
//! creates a topic with the partition count a test asks for (auto-creation is
//! off on the test broker, as it should be in production).
//!
//! When Java, Maven or the broker's jars are missing, [`kafka()`] panics with
//! one line telling what to run. Tests never skip silently and never pass
//! without a broker.
//!
//! Set `KAFKA_TEST_BOOTSTRAP=host:port` to run the tests against a broker you
//! started yourself (it must have auto topic creation off and allow
//! replication factor 1).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() {
//! let kafka = testkit::kafka();
//! let topic = testkit::unique_name("orders");
//! kafka.create_topic(&topic, 6).await;
//! let producer: rdkafka::producer::FutureProducer = kafka.client_config().create().unwrap();
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Environment variable naming an already running broker to test against.
pub const BOOTSTRAP_ENV: &str = "KAFKA_TEST_BOOTSTRAP";

/// A running Kafka broker that tests can use.
#[derive(Debug)]
pub struct Kafka {
    bootstrap: String,
    /// The broker's directory when this process started it.
    dir: Option<PathBuf>,
}

static KAFKA: OnceLock<Kafka> = OnceLock::new();

/// The test process's broker, started on first use.
///
/// # Panics
///
/// Panics with one line saying what to run when no broker can be started
/// (Java or the broker's jars missing, or the broker failing to start).
pub fn kafka() -> &'static Kafka {
    KAFKA.get_or_init(|| match Kafka::start() {
        Ok(kafka) => kafka,
        Err(message) => panic!("{message}"),
    })
}

impl Kafka {
    fn start() -> Result<Self, String> {
        if let Ok(bootstrap) = std::env::var(BOOTSTRAP_ENV)
            && !bootstrap.trim().is_empty()
        {
            return Ok(Self {
                bootstrap,
                dir: None,
            });
        }
        let script = script_path();
        let dir = std::env::temp_dir().join(format!("testkit-kafka-{}", std::process::id()));
        // Both listeners on ports free when chosen (see `free_port`).
        // Another process can still bind one in between; the script then
        // says the port is in use, and only that is worth a second try.
        let mut attempt = 0;
        let output = loop {
            attempt += 1;
            let (port, controller_port) = (free_port()?, free_port()?);
            let output = Command::new("bash")
                .arg(&script)
                .args(["start", "--no-fetch", "--port", &port.to_string()])
                .args(["--controller-port", &controller_port.to_string()])
                .arg("--dir")
                .arg(&dir)
                .args(["--owner-pid", &std::process::id().to_string()])
                .output()
                .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
            let port_taken = String::from_utf8_lossy(&output.stderr).contains("already in use");
            if output.status.success() || !port_taken || attempt == 3 {
                break output;
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The script's last line says what went wrong and what to run.
            let reason = stderr
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("");
            return Err(format!(
                "no Kafka broker for the tests: {reason} \
                 (the README's test command, scripts/test.sh, provisions everything)"
            ));
        }
        let bootstrap = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(Self {
            bootstrap,
            dir: Some(dir),
        })
    }

    /// The broker's bootstrap address, `host:port`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's data and log directory, when this process started it.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A client config pointing at the broker, to add producer or consumer settings to.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1) and
    /// waits until the broker reports it.
    ///
    /// # Panics
    ///
    /// Panics when the topic cannot be created.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        self.create_topic_with(topic, partitions, &[]).await;
    }

    /// Creates `topic` with `partitions` partitions and topic-level configs
    /// such as `("cleanup.policy", "compact")`.
    ///
    /// # Panics
    ///
    /// Panics when the topic cannot be created.
    pub async fn create_topic_with(&self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .unwrap_or_else(|error| panic!("admin client: {error}"));
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            new_topic = new_topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics([&new_topic], &options)
            .await
            .unwrap_or_else(|error| panic!("creating topic {topic}: {error}"));
        for result in results {
            if let Err((name, code)) = result {
                panic!("creating topic {name}: {code}");
            }
        }
    }
}

/// A name no other test uses: `prefix` followed by this process's id, a
/// counter and the time, so names never repeat across processes or runs.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{n}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

/// The project's broker script.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kafka/kafka.sh")
}

/// A port for a test broker's listener, free when chosen.
///
/// Chosen below the kernel's ephemeral range, which `bind(":0")` and every
/// outgoing connection draw from: a client connecting anywhere could
/// otherwise take the port between this check and the broker's bind, or
/// while an outage test has the broker stopped. Ports handed out once in
/// this process are never handed out again.
///
/// # Errors
///
/// When no port can be bound at all.
pub fn free_port() -> Result<u16, String> {
    use std::hash::{BuildHasher, Hasher};

    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const LOWEST: u16 = 15_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if ephemeral_low > LOWEST + 1_000 {
        let span = u64::from(ephemeral_low - LOWEST);
        let random = std::collections::hash_map::RandomState::new();
        for attempt in 0..200_u64 {
            let mut hasher = random.build_hasher();
            hasher.write_u64(attempt);
            hasher.write_u32(std::process::id());
            let offset = u16::try_from(hasher.finish() % span).unwrap_or(0);
            let port = LOWEST + offset;
            if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return Ok(port);
            }
        }
    }
    // No room below the ephemeral range (an unusual kernel setting): take
    // one the OS hands out; the script says "port in use" if it is taken.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| format!("no free port for the test broker: {error}"))?;
    given.push(port);
    Ok(port)
}

/// A broker of one test's own, which the test may stop and start again on
/// the same port with the same data: for outage tests. Stopped and
/// deleted when dropped (and by the script's watchdog if the test process
/// dies first).
#[derive(Debug)]
pub struct OwnBroker {
    port: u16,
    controller_port: u16,
    dir: PathBuf,
    bootstrap: String,
    /// A second listener taking only SASL/SCRAM-SHA-512 logins, and its one
    /// user (`name:password`).
    scram: Option<(u16, String)>,
    /// A listener taking only TLS connections with a client certificate.
    tls: Option<u16>,
}

/// The files a client needs to reach an [`OwnBroker`]'s TLS listener, made
/// by the broker script: the CA that signed the broker's certificate, and a
/// client certificate with its encrypted key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM) that signed both certificates.
    pub ca: PathBuf,
    /// The client's certificate (PEM).
    pub certificate: PathBuf,
    /// The client's private key (PKCS#8 PEM, encrypted).
    pub key: PathBuf,
    /// The password of `key`.
    pub key_password: String,
}

impl OwnBroker {
    /// Starts a new broker on free ports.
    ///
    /// # Panics
    ///
    /// Panics with the script's reason when the broker cannot start.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// Starts a new broker that also listens for SASL/SCRAM-SHA-512 logins
    /// (plaintext) on a second port, knowing one user, `user` with
    /// `password`; [`OwnBroker::scram_bootstrap_servers`] is that listener.
    ///
    /// # Panics
    ///
    /// As [`OwnBroker::start`].
    pub fn start_with_scram(user: &str, password: &str) -> Self {
        let port = free_port().unwrap_or_else(|message| panic!("{message}"));
        Self::start_with(Some((port, format!("{user}:{password}"))), None)
    }

    /// Starts a new broker that also listens for TLS connections that show
    /// a client certificate signed by the broker's own CA;
    /// [`OwnBroker::tls_bootstrap_servers`] is that listener and
    /// [`OwnBroker::tls_files`] what a client needs to use it.
    ///
    /// # Panics
    ///
    /// As [`OwnBroker::start`].
    pub fn start_with_tls() -> Self {
        let port = free_port().unwrap_or_else(|message| panic!("{message}"));
        Self::start_with(None, Some(port))
    }

    fn start_with(scram: Option<(u16, String)>, tls: Option<u16>) -> Self {
        let dir = std::env::temp_dir().join(unique_name("testkit-own-kafka"));
        let (port, controller_port) = match (free_port(), free_port()) {
            (Ok(port), Ok(controller)) => (port, controller),
            (Err(message), _) | (_, Err(message)) => panic!("{message}"),
        };
        let mut broker = Self {
            port,
            controller_port,
            dir,
            bootstrap: String::new(),
            scram,
            tls,
        };
        broker.bootstrap = broker.run_start();
        broker
    }

    /// The SCRAM listener's address, when the broker has one.
    pub fn scram_bootstrap_servers(&self) -> Option<String> {
        self.scram
            .as_ref()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
    }

    /// The TLS listener's address, when the broker has one.
    pub fn tls_bootstrap_servers(&self) -> Option<String> {
        self.tls.map(|port| format!("127.0.0.1:{port}"))
    }

    /// The CA, client certificate and key for the TLS listener, when the
    /// broker has one.
    ///
    /// # Panics
    ///
    /// Panics when the script did not leave the key's password.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.tls?;
        let dir = self.dir.join("tls");
        let key_password = std::fs::read_to_string(dir.join("client.key.password"))
            .unwrap_or_else(|error| panic!("no client key password in {}: {error}", dir.display()))
            .trim()
            .to_owned();
        Some(TlsFiles {
            ca: dir.join("ca.pem"),
            certificate: dir.join("client.pem"),
            key: dir.join("client.key"),
            key_password,
        })
    }

    fn run_start(&self) -> String {
        let output = Command::new("bash")
            .arg(script_path())
            .args(["start", "--no-fetch", "--port", &self.port.to_string()])
            .args(["--controller-port", &self.controller_port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--owner-pid", &std::process::id().to_string()])
            .arg("--restartable")
            .args(self.scram.iter().flat_map(|(port, user)| {
                [
                    "--scram-port".to_owned(),
                    port.to_string(),
                    "--scram-user".to_owned(),
                    user.clone(),
                ]
            }))
            .args(
                self.tls
                    .iter()
                    .flat_map(|port| ["--tls-port".to_owned(), port.to_string()]),
            )
            .output()
            .unwrap_or_else(|error| panic!("cannot run the broker script: {error}"));
        if !output.status.success() {
            panic!(
                "the test's own broker did not start: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The broker's bootstrap address; the same across restarts.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// A client config pointing at the broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Stops the broker, keeping its data; returns once its process is gone.
    ///
    /// # Panics
    ///
    /// Panics when the script cannot stop it.
    pub fn stop(&self) {
        let status = Command::new("bash")
            .arg(script_path())
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .status()
            .unwrap_or_else(|error| panic!("cannot run the broker script: {error}"));
        assert!(status.success(), "the test's own broker did not stop");
    }

    /// Starts the broker again on the same ports, with the same data.
    ///
    /// # Panics
    ///
    /// Panics when it does not come back.
    pub fn restart(&self) {
        let bootstrap = self.run_start();
        assert_eq!(bootstrap, self.bootstrap, "the broker came back elsewhere");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script_path())
            .args(["stop", "--purge", "--dir"])
            .arg(&self.dir)
            .status();
    }
}

/// Logs to the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=info`);
/// quiet otherwise. Safe to call from every test.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
