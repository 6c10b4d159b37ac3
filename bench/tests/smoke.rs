//! A short run of `bench all` — every system, every job, every output
//! checked — so the harness, the Kafka Streams peer and the Quix Streams
//! peer cannot rot. Small data, so it proves the machinery, not the speed.
//!
//! It starts its own broker (through `testkit`), builds the Kafka Streams
//! peer with Maven and installs Quix Streams into its virtualenv when they
//! are not built yet (both cached in git-ignored directories). A missing
//! Java, Maven or Python fails it with one line saying what to install.
//! Kafka Streams runs in its latency-matched profile only: its defaults
//! commit every 30 s, which would make a small run wait for minutes.

use std::process::Command;

#[test]
fn every_system_runs_every_job_and_gets_it_right() {
    let report = std::env::temp_dir().join(format!("bench-smoke-{}.md", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "all",
            "--records",
            "3000",
            "--customers",
            "500",
            "--systems",
            "ours,ks-latency,quix,hand",
            "--jobs",
            "stateless,stateful,windowed,stateful-eos,latency",
            "--latency-rate",
            "500",
            "--latency-warmup",
            "1",
            "--latency-seconds",
            "2",
            "--broker-warmup",
            "1",
            "--timeout",
            "120",
            "--docs",
        ])
        .arg(&report)
        .output()
        .expect("run the bench binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench all failed:\n{stdout}\n{}",
        stderr
            .lines()
            .filter(|l| !l.contains("PartitionEOF"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every system ran every job it supports, and passed the output check.
    for system in [
        "ours (engine)",
        "Kafka Streams, latency-matched",
        "Quix Streams",
        "hand-written loop",
    ] {
        for job in ["stateless", "stateful", "windowed"] {
            assert!(
                stdout.lines().any(
                    |l| l.starts_with(&format!("| {job} | {system} |")) && l.contains("| ok (")
                ),
                "no passing {job} row for {system}:\n{stdout}"
            );
        }
        let latency = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {system} | 500 |")))
            .unwrap_or_else(|| panic!("no latency row for {system}:\n{stdout}"));
        assert!(!latency.contains("FAILED"), "{latency}");
    }
    for system in [
        "ours (engine)",
        "Kafka Streams, latency-matched",
        "Quix Streams",
    ] {
        assert!(
            stdout.lines().any(|l| l
                .starts_with(&format!("| stateful, exactly once | {system} |"))
                && l.contains("| ok (")),
            "no passing exactly-once row for {system}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("exactly once | hand-written loop"));
    // The report went into the Markdown file, between its markers.
    let written = std::fs::read_to_string(&report).expect("the report file");
    std::fs::remove_file(&report).ok();
    assert!(
        written.contains("<!-- bench-all:begin -->") && written.contains("<!-- bench-all:end -->")
    );
    assert!(
        written.contains("| goal | measured | verdict |"),
        "{written}"
    );
}
