//! The systems under comparison, how each is provisioned (the Kafka Streams
//! peer built with Maven, Quix Streams installed from PyPI into a
//! virtualenv, both cached in git-ignored directories and rebuilt only when
//! their sources change), and the command that starts one run of each.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::peer::JobKind;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum System {
    /// The engine.
    Ours,
    /// Kafka Streams with its defaults.
    KsDefault,
    /// Kafka Streams latency-matched with the engine: commit every 100 ms,
    /// record cache off, `linger.ms=5`.
    KsLatency,
    /// Quix Streams with its defaults.
    Quix,
    /// The hand-written rdkafka loop.
    Hand,
}

impl System {
    /// The name in tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ours => "ours (engine)",
            Self::KsDefault => "Kafka Streams, defaults",
            Self::KsLatency => "Kafka Streams, latency-matched",
            Self::Quix => "Quix Streams",
            Self::Hand => "hand-written loop",
        }
    }

    /// A short name for topic and group names.
    pub(crate) fn short(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::KsDefault => "ksdef",
            Self::KsLatency => "kslat",
            Self::Quix => "quix",
            Self::Hand => "hand",
        }
    }

    /// Whether the system can run the job exactly once.
    pub(crate) fn has_exactly_once(self) -> bool {
        !matches!(self, Self::Hand)
    }

    fn is_kafka_streams(self) -> bool {
        matches!(self, Self::KsDefault | Self::KsLatency)
    }
}

/// What the systems need to start: found or built once per harness run.
#[derive(Debug, Default)]
pub(crate) struct Provisioned {
    /// `java` and the Kafka Streams peer's class path.
    kafka_streams: Option<(PathBuf, String)>,
    /// The virtualenv's Python and the Quix peer script.
    quix: Option<(PathBuf, PathBuf)>,
    /// A private copy of this binary for the in-binary peers, so a rebuild
    /// of `target/` during a long run cannot pull it away.
    own_binary: Option<PathBuf>,
    /// Versions for the report.
    pub(crate) versions: Vec<(String, String)>,
}

/// One run's settings, handed to a peer on its command line.
pub(crate) struct Launch<'a> {
    pub(crate) bootstrap: &'a str,
    pub(crate) job: JobKind,
    pub(crate) eos: bool,
    pub(crate) input: &'a str,
    pub(crate) output: &'a str,
    pub(crate) app_id: &'a str,
    pub(crate) state_dir: &'a Path,
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn newest_mtime(paths: &[PathBuf]) -> std::io::Result<std::time::SystemTime> {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else {
            newest = newest.max(meta.modified()?);
        }
    }
    Ok(newest)
}

fn java_binary() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = Path::new(&home).join("bin/java");
        if java.is_file() {
            return Ok(java);
        }
    }
    if on_path("java") {
        return Ok(PathBuf::from("java"));
    }
    bail!(
        "the Kafka Streams peer needs Java 17+, but 'java' was not found (install a JDK 17, e.g. Debian's openjdk-17-jdk-headless, or set JAVA_HOME)"
    )
}

impl Provisioned {
    /// Finds or builds what `systems` need; fails with one line naming what
    /// is missing.
    pub(crate) fn prepare(systems: &[System], work_dir: &Path) -> anyhow::Result<Self> {
        let mut provisioned = Self::default();
        // Always: the latency runs warm the broker up with the hand loop.
        {
            let copy = work_dir.join("bench-peer");
            std::fs::copy(std::env::current_exe()?, &copy)
                .context("copying the bench binary for its peers")?;
            provisioned.own_binary = Some(copy);
        }
        provisioned.versions.push((
            "librdkafka (engine, hand-written loop)".into(),
            rdkafka::util::get_rdkafka_version().1,
        ));
        if systems.iter().any(|s| s.is_kafka_streams()) {
            let (java, class_path) = build_kafka_streams()?;
            provisioned.versions.push((
                "Kafka Streams".into(),
                "4.4.0 (bench/peers/kafka-streams/pom.xml)".into(),
            ));
            if let Ok(out) = Command::new(&java).arg("-version").output() {
                let text = String::from_utf8_lossy(&out.stderr);
                if let Some(line) = text.lines().next() {
                    provisioned
                        .versions
                        .push(("Java".into(), line.trim().to_owned()));
                }
            }
            provisioned.kafka_streams = Some((java, class_path));
        }
        if systems.contains(&System::Quix) {
            let (python, script) = build_quix()?;
            let version = Command::new(&python)
                .args(["-c", "import quixstreams, confluent_kafka; print(quixstreams.__version__, confluent_kafka.libversion()[0])"])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            let mut parts = version.split_whitespace();
            provisioned.versions.push((
                "Quix Streams".into(),
                parts.next().unwrap_or("?").to_owned(),
            ));
            provisioned.versions.push((
                "librdkafka (Quix, via confluent-kafka)".into(),
                parts.next().unwrap_or("?").to_owned(),
            ));
            if let Ok(out) = Command::new(&python).arg("--version").output() {
                provisioned.versions.push((
                    "Python".into(),
                    String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                ));
            }
            provisioned.quix = Some((python, script));
        }
        Ok(provisioned)
    }

    /// The command that starts `system` for one run.
    pub(crate) fn command(&self, system: System, launch: &Launch<'_>) -> anyhow::Result<Command> {
        let common = |command: &mut Command| {
            command
                .args(["--bootstrap", launch.bootstrap])
                .args(["--job", launch.job.name()])
                .args(["--input", launch.input])
                .args(["--output", launch.output])
                .args(["--app-id", launch.app_id])
                .arg("--state-dir")
                .arg(launch.state_dir);
            if launch.eos {
                command.arg("--eos");
            }
        };
        let mut command = match system {
            System::Ours | System::Hand => {
                let binary = self
                    .own_binary
                    .as_ref()
                    .context("the in-binary peers were not prepared")?;
                let mut command = Command::new(binary);
                command.args([
                    "peer",
                    "--system",
                    if system == System::Ours {
                        "engine"
                    } else {
                        "hand"
                    },
                ]);
                common(&mut command);
                command
            }
            System::KsDefault | System::KsLatency => {
                let (java, class_path) = self
                    .kafka_streams
                    .as_ref()
                    .context("the Kafka Streams peer was not prepared")?;
                let mut command = Command::new(java);
                command.args(["-cp", class_path, "bench.Peer"]);
                common(&mut command);
                command.args([
                    "--profile",
                    if system == System::KsDefault {
                        "default"
                    } else {
                        "latency"
                    },
                ]);
                command
            }
            System::Quix => {
                let (python, script) = self
                    .quix
                    .as_ref()
                    .context("the Quix Streams peer was not prepared")?;
                let mut command = Command::new(python);
                command.arg(script);
                common(&mut command);
                command
            }
        };
        command.stdin(std::process::Stdio::null());
        Ok(command)
    }
}

/// Builds the Kafka Streams peer with Maven unless its jar is newer than
/// its sources; returns `java` and the class path.
fn build_kafka_streams() -> anyhow::Result<(PathBuf, String)> {
    let java = java_binary()?;
    let dir = peers_dir().join("kafka-streams");
    let jar = dir.join("target/kafka-streams-peer.jar");
    let lib = dir.join("target/lib");
    let sources = newest_mtime(&[dir.join("pom.xml"), dir.join("src")])
        .with_context(|| format!("reading {}", dir.display()))?;
    let built = std::fs::metadata(&jar).and_then(|m| m.modified()).ok();
    if built.is_none_or(|built| built < sources) || !lib.is_dir() {
        if !on_path("mvn") {
            bail!(
                "the Kafka Streams peer is built with Maven, but 'mvn' was not found (install Debian's maven package)"
            );
        }
        eprintln!("building the Kafka Streams peer with Maven ...");
        let output = Command::new("mvn")
            .args(["-q", "-B", "package"])
            .current_dir(&dir)
            .output()
            .context("running mvn")?;
        if !output.status.success() {
            let log = String::from_utf8_lossy(&output.stdout);
            let last = log.lines().rev().take(15).collect::<Vec<_>>();
            for line in last.iter().rev() {
                eprintln!("{line}");
            }
            bail!(
                "mvn could not build the Kafka Streams peer in {}",
                dir.display()
            );
        }
    }
    Ok((java, format!("{}:{}/*", jar.display(), lib.display())))
}

/// Creates the Quix Streams virtualenv from `requirements.txt` unless it
/// exists for the same requirements; returns its Python and the peer
/// script.
fn build_quix() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = peers_dir().join("quix");
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    let requirements = std::fs::read_to_string(dir.join("requirements.txt"))
        .context("reading bench/peers/quix/requirements.txt")?;
    let marker = venv.join("bench-requirements.txt");
    let current = std::fs::read_to_string(&marker).ok();
    if !python.is_file() || current.as_deref() != Some(requirements.as_str()) {
        if !on_path("python3") {
            bail!(
                "the Quix Streams peer needs Python 3.9+, but 'python3' was not found (install Debian's python3 and python3-venv packages)"
            );
        }
        eprintln!("installing Quix Streams into {} ...", venv.display());
        std::fs::remove_dir_all(&venv).ok();
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .context("running python3 -m venv")?;
        if !status.status.success() {
            bail!(
                "python3 could not create a virtualenv ({}); install Debian's python3-venv package",
                String::from_utf8_lossy(&status.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        let output = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(dir.join("requirements.txt"))
            .output()
            .context("running pip")?;
        if !output.status.success() {
            bail!(
                "pip could not install Quix Streams: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        std::fs::write(&marker, &requirements)?;
    }
    Ok((python, dir.join("peer.py")))
}
