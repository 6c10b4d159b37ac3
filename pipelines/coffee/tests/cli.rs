//! The `coffee` binary as users run it: the README's quick start (`coffee
//! all` on the embedded cluster, then one order placed with curl's
//! request), the topology printout, configuration errors, and a replay
//! that refuses while the application runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, banner_ports, coffee, http, json};

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_quick_start_places_an_order_that_reaches_completed() {
    let mut child = coffee()
        .args(["all", "--speed-factor", "0.01"])
        // Every port from the OS, so the test never collides with anything.
        .args(["--set", "producer.server_port=0", "--set", "producer.grpc_port=0"])
        .args(["--set", "gateway.server_port=0", "--set", "streams.query_port=0"])
        .args(["--set", "streams.metrics_port=0", "--set", "barista.metrics_port=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // The banner names the gateway's port (its metrics are on its HTTP port).
    let gateway = banner_ports(stdout)["gateway"];
    let (status, placed) = http(
        gateway,
        "POST",
        "/order",
        r#"{"customer_name":"John Doe","coffee_type":"Latte"}"#,
    );
    let placed = json(&placed);
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["msg"], "Order for John Doe placed successfully!");
    let id = placed["order"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, order) = http(gateway, "GET", &format!("/order/{id}"), "");
        let order = json(&order);
        if order["order"]["status"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order did not complete: {order}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM stops everything gracefully.
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut running = running;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "coffee all did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn the_topology_printout_matches_the_golden_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (args, file) in [
        (&["topology"][..], "coffee.txt"),
        (&["topology", "--mermaid"][..], "coffee.mmd"),
    ] {
        let output = coffee().args(args).output().unwrap();
        assert!(output.status.success());
        let expected = std::fs::read_to_string(dir.join(file)).unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
    }
}

#[test]
fn bad_settings_fail_at_start_naming_key_value_and_layer() {
    let output = coffee()
        .arg("streams")
        .env("KAFKA_BROKERS", "127.0.0.1:9")
        .env("KAFKA_PROCESSING_GUARANTEE", "sometimes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("streams.processing_guarantee"), "{stderr}");
    assert!(
        stderr.contains("sometimes") && stderr.contains("KAFKA_PROCESSING_GUARANTEE"),
        "{stderr}"
    );

    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    writeln!(file, "barista:\n  workers: 0").unwrap();
    let output = coffee()
        .args(["consumer", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("barista.workers") && stderr.contains("1 to 256"),
        "{stderr}"
    );

    let output = coffee().arg("streams").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("KAFKA_BROKERS"), "{stderr}");
}

/// Whether a group coordinator error only means "ask again shortly".
fn coffee_retriable(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{
        CoordinatorLoadInProgress, CoordinatorNotAvailable, NotCoordinator,
    };
    matches!(
        error.rdkafka_error_code(),
        Some(CoordinatorLoadInProgress | CoordinatorNotAvailable | NotCoordinator)
    )
}

#[test]
fn a_replay_refuses_while_the_application_runs_then_replays() {
    let broker = testkit::kafka().bootstrap_servers().to_owned();
    let name = testkit::unique_name("cli-replay");
    let state = tempfile::tempdir().unwrap();
    let settings = |command: &mut Command| {
        command
            .args(["--brokers", &broker])
            .args(["--set", &format!("streams.application_id={name}")])
            .args(["--set", &format!("streams.input_topic={name}-orders")])
            .args(["--set", &format!("streams.output_topic={name}-processed")])
            .args(["--set", &format!("streams.rejected_topic={name}-rejected")])
            .args(["--set", &format!("streams.stats_topic={name}-stats")])
            .args(["--set", &format!("streams.demand_topic={name}-demand")])
            .args([
                "--set",
                &format!("streams.state_dir={}", state.path().display()),
            ])
            .args([
                "--set",
                "streams.query_port=0",
                "--set",
                "streams.metrics_port=0",
            ]);
    };
    let mut streams = coffee();
    settings(streams.arg("streams"));
    let mut streams = Running(streams.stderr(Stdio::null()).spawn().unwrap());
    // Wait until the application's group has a member.
    let probe: rdkafka::consumer::BaseConsumer = testkit::kafka().client_config().create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        use rdkafka::consumer::Consumer;
        // A broker that just started may still be loading its group
        // coordinator: that is "not yet", not a failure.
        match probe.fetch_group_list(Some(&name), Duration::from_secs(5)) {
            Ok(groups) if groups.groups().iter().any(|g| !g.members().is_empty()) => break,
            Ok(_) => {}
            Err(error) => assert!(coffee_retriable(&error), "{error}"),
        }
        assert!(
            Instant::now() < deadline,
            "the application never joined its group"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut replay = coffee();
    settings(replay.arg("replay"));
    let output = replay.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("is running") && stderr.contains("stop every instance"),
        "{stderr}"
    );

    let pid = streams.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(streams.0.wait().unwrap().success());
    let mut replay = coffee();
    settings(replay.args(["replay", "--from", "earliest"]));
    let output = replay.output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("Replayed 0 records"), "{stderr}");
}
