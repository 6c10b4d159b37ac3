//! Monitoring as shipped in `deploy/`: the Prometheus configuration and
//! alert rules pass `promtool` (config, rules and the rules' unit tests),
//! every Grafana panel's query is valid PromQL, and — on a running `coffee
//! all` with real orders, a rejected one, a cancel and a dead letter — every
//! metric the dashboard and the alerts query is exported by some service's
//! `/metrics`, with the labels they filter and group by.
//!
//! `promtool` comes from Debian's `prometheus` package; `scripts/test.sh`
//! installs it when it is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, banner_ports, http, json, read, root, wait_for};

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// PromQL: the metric names and labels an expression refers to.
// ---------------------------------------------------------------------------

/// What one PromQL expression refers to.
#[derive(Debug, Default, PartialEq)]
struct Refs {
    /// Metric names, each with the label names its selector matches on.
    metrics: BTreeMap<String, BTreeSet<String>>,
    /// Label names in `by`, `without`, `on`, `ignoring` and `group_*` lists.
    grouping: BTreeSet<String>,
}

/// Words that are never metric names: aggregations, keywords and the
/// binary operators spelled as words.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Skips a string literal that starts at `chars[i]`; returns its text and
/// the index after it.
fn string_at(chars: &[char], i: usize) -> (String, usize) {
    let quote = chars[i];
    let mut text = String::new();
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' && j + 1 < chars.len() {
            j += 1;
        }
        text.push(chars[j]);
        j += 1;
    }
    (text, j + 1)
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(chars: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < chars.len() && is_ident(chars[j]) {
        j += 1;
    }
    (chars[i..j].iter().collect(), j)
}

/// The label names in a `{…}` matcher list starting at `chars[i]`, and a
/// `__name__="…"` metric name if there is one; returns the index after `}`.
fn matchers_at(chars: &[char], mut i: usize) -> (BTreeSet<String>, Option<String>, usize) {
    let mut labels = BTreeSet::new();
    let mut name = None;
    i += 1;
    loop {
        i = skip_space(chars, i);
        match chars.get(i) {
            None => return (labels, name, i),
            Some('}') => return (labels, name, i + 1),
            Some(',') => i += 1,
            Some(c) if is_ident_start(*c) => {
                let (label, j) = ident_at(chars, i);
                let mut j = skip_space(chars, j);
                let exact = chars.get(j) == Some(&'=') && chars.get(j + 1) != Some(&'~');
                while j < chars.len() && matches!(chars[j], '=' | '!' | '~') {
                    j += 1;
                }
                j = skip_space(chars, j);
                let (value, j) = if matches!(chars.get(j), Some('"' | '\'' | '`')) {
                    string_at(chars, j)
                } else {
                    (String::new(), j)
                };
                if label == "__name__" && exact {
                    name = Some(value);
                } else {
                    labels.insert(label);
                }
                i = j;
            }
            Some(_) => i += 1,
        }
    }
}

/// The metric names and labels `expr` refers to. Function names, keywords,
/// strings, durations, numbers and Grafana variables (`$__rate_interval`)
/// are not metric names; `by (…)` lists and `{…}` matchers hold labels.
fn refs(expr: &str) -> Refs {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut i = 0;
    // The metric a following `{…}` belongs to.
    let mut last_metric: Option<String> = None;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '"' | '\'' | '`') {
            i = string_at(&chars, i).1;
            last_metric = None;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            let (labels, name, j) = matchers_at(&chars, i);
            let metric = name.or(last_metric.take());
            if let Some(metric) = metric {
                refs.metrics.entry(metric).or_default().extend(labels);
            }
            i = j;
        } else if c == '$' {
            // A Grafana variable: `$name` or `${name}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                i = ident_at(&chars, i).1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers, including 1e3, 0x1f and durations such as 5m.
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            last_metric = None;
        } else if is_ident_start(c) {
            let (word, j) = ident_at(&chars, i);
            let next = skip_space(&chars, j);
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) && chars.get(next) == Some(&'(') {
                let mut k = next + 1;
                while k < chars.len() && chars[k] != ')' {
                    if is_ident_start(chars[k]) {
                        let (label, after) = ident_at(&chars, k);
                        refs.grouping.insert(label);
                        k = after;
                    } else {
                        k += 1;
                    }
                }
                i = k + 1;
                last_metric = None;
            } else if KEYWORDS.contains(&lower.as_str()) || chars.get(next) == Some(&'(') {
                // A keyword, or a function call.
                i = j;
                last_metric = None;
            } else {
                refs.metrics.entry(word.clone()).or_default();
                last_metric = Some(word);
                i = j;
            }
        } else {
            i += 1;
            last_metric = None;
        }
    }
    refs
}

#[test]
fn promql_references_are_found_and_nothing_else() {
    let found = refs(
        r#"histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket{endpoint!~".*/cancel", service="gateway"}[$__rate_interval])))"#,
    );
    assert_eq!(
        found.metrics,
        BTreeMap::from([(
            "http_request_duration_seconds_bucket".to_owned(),
            BTreeSet::from(["endpoint".to_owned(), "service".to_owned()])
        )])
    );
    assert_eq!(
        found.grouping,
        BTreeSet::from(["le".to_owned(), "service".to_owned()])
    );

    let found = refs(
        "sum(rate(a_total{x=\"y,}z\"}[5m] offset 1h)) by (job) / on(job) group_left(instance) \
         b_total > bool 0.5e3 and {__name__=\"c_seconds\", k=~'v'} or count_values(\"version\", d_info) \
         unless label_replace(e_total, \"dst\", \"$1\", \"src\", \"(f_total)\") @ end() # g_total\n",
    );
    let names: Vec<&str> = found.metrics.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["a_total", "b_total", "c_seconds", "d_info", "e_total"]
    );
    assert_eq!(found.metrics["c_seconds"], BTreeSet::from(["k".to_owned()]));
    assert_eq!(found.metrics["a_total"], BTreeSet::from(["x".to_owned()]));
    assert_eq!(
        found.grouping,
        BTreeSet::from(["instance".to_owned(), "job".to_owned()])
    );
}

// ---------------------------------------------------------------------------
// The expressions the alerts and the dashboard run.
// ---------------------------------------------------------------------------

/// Every alert and recording rule expression: (rule name, expression).
fn alert_expressions() -> Vec<(String, String)> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/alerts.yml")).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .unwrap()
                .to_owned();
            out.push((name, rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    assert!(out.len() >= 7, "alerts.yml has only {} rules", out.len());
    out
}

/// A dashboard query: the panel's title, its `expr` and `legendFormat`.
struct Query {
    panel: String,
    expr: String,
    legend: String,
}

fn dashboard_queries() -> Vec<Query> {
    fn walk(value: &serde_json::Value, panel: &str, out: &mut Vec<Query>) {
        match value {
            serde_json::Value::Object(map) => {
                let panel = map
                    .get("title")
                    .and_then(|t| t.as_str())
                    .unwrap_or(panel)
                    .to_owned();
                if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                    out.push(Query {
                        panel: panel.clone(),
                        expr: expr.to_owned(),
                        legend: map
                            .get("legendFormat")
                            .and_then(|l| l.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                for child in map.values() {
                    walk(child, &panel, out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, panel, out);
                }
            }
            _ => {}
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/coffee.json")).unwrap();
    let mut out = Vec::new();
    walk(&dashboard, "", &mut out);
    assert!(
        out.len() >= 20,
        "the dashboard has only {} queries",
        out.len()
    );
    out
}

/// The labels `{{label}}` in a legend names.
fn legend_labels(legend: &str) -> BTreeSet<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------

/// Runs promtool in the repository root; fails with one clear line when it
/// is not installed.
fn promtool(args: &[&str]) -> (bool, String) {
    let output = match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: run scripts/test.sh, or `apt-get install -y prometheus` (Debian)"
        ),
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn promtool_accepts_the_config_the_rules_and_their_unit_tests() {
    for args in [
        &["check", "config", "deploy/prometheus/prometheus.yml"][..],
        &["check", "rules", "deploy/prometheus/alerts.yml"],
        &["test", "rules", "deploy/prometheus/tests/alerts_test.yml"],
    ] {
        let (ok, text) = promtool(args);
        assert!(ok, "promtool {}:\n{text}", args.join(" "));
    }
}

/// The unit tests can fail: an alert with a lower threshold fires where the
/// tests say it must not.
#[test]
fn the_rule_unit_tests_catch_a_wrong_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let rules = read("deploy/prometheus/alerts.yml").replace("> 0.05", "> 0.01");
    std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("tests/alerts_test.yml"),
        read("deploy/prometheus/tests/alerts_test.yml"),
    )
    .unwrap();
    let test = dir.path().join("tests/alerts_test.yml");
    let (ok, text) = promtool(&["test", "rules", test.to_str().unwrap()]);
    assert!(!ok, "a 1 % threshold passed the tests:\n{text}");
    assert!(text.contains("CoffeeHttpErrorRateHigh"), "{text}");
}

/// Every dashboard query parses as PromQL: promtool checks them as
/// recording rules, with Grafana's interval variables filled in.
#[test]
fn every_dashboard_query_is_valid_promql() {
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in dashboard_queries().iter().enumerate() {
        let expr = query
            .expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    let (ok, text) = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(ok, "the dashboard has invalid PromQL:\n{text}");
}

/// The promtool commands docs/monitoring.md shows, run as shown.
#[test]
fn the_promtool_commands_in_the_monitoring_guide_work() {
    let docs = read("docs/monitoring.md");
    let commands: Vec<&str> = docs
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("promtool "))
        .collect();
    assert!(commands.len() >= 3, "{commands:?}");
    for command in commands {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let (ok, text) = promtool(&args);
        assert!(ok, "{command}:\n{text}");
    }
}

// ---------------------------------------------------------------------------
// A running system, scraped.
// ---------------------------------------------------------------------------

/// One scrape: each sample name with the label names it carries and the
/// sum of its values.
#[derive(Default)]
struct Scrape {
    samples: BTreeMap<String, (BTreeSet<String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut scrape = Self::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or(f64::NAN);
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let entry = scrape.samples.entry(name.to_owned()).or_default();
            // `name="value",…`; values may hold commas, so take the names
            // that follow the start or a `",`.
            for part in format!("\",{labels}").split("\",").skip(1) {
                if let Some((label, _)) = part.split_once("=\"") {
                    entry.0.insert(label.to_owned());
                }
            }
            entry.1 += value;
        }
        scrape
    }

    fn total(&self, name: &str) -> f64 {
        self.samples.get(name).map_or(0.0, |(_, total)| *total)
    }
}

/// Series Prometheus itself writes for every target; never exported.
const WRITTEN_BY_PROMETHEUS: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];

/// Labels Prometheus adds to every series of a target.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// What the queries refer to that `exported` does not have, one line each.
fn missing(exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut problems = BTreeSet::new();
    let mut check = |source: String, expr: &str, legend: &str| {
        let found = refs(expr);
        let mut available: BTreeSet<String> =
            TARGET_LABELS.iter().map(|l| (*l).to_owned()).collect();
        for (metric, labels) in &found.metrics {
            if WRITTEN_BY_PROMETHEUS.contains(&metric.as_str()) {
                continue;
            }
            let Some(has) = exported.get(metric) else {
                problems.insert(format!("{source}: metric {metric} is not exported"));
                continue;
            };
            available.extend(has.iter().cloned());
            for label in labels {
                if !has.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                    problems.insert(format!("{source}: {metric} has no label {label}"));
                }
            }
        }
        for label in found.grouping.iter().chain(&legend_labels(legend)) {
            if !available.contains(label) {
                problems.insert(format!(
                    "{source}: no metric of `{expr}` has the label {label}"
                ));
            }
        }
    };
    for (alert, expr) in alert_expressions() {
        check(format!("alert {alert}"), &expr, "");
    }
    for query in dashboard_queries() {
        check(
            format!("panel \"{}\"", query.panel),
            &query.expr,
            &query.legend,
        );
    }
    problems.into_iter().collect()
}

fn order_status(gateway: u16, id: &str) -> Option<String> {
    let (status, body) = http(gateway, "GET", &format!("/order/{id}"), "");
    (status == 200).then(|| json(&body)["order"]["status"].as_str().unwrap().to_owned())
}

fn place(port: u16, customer: &str, drink: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"customer_name": customer, "coffee_type": drink}).to_string();
    let (status, body) = http(port, "POST", "/order", &body);
    (status, json(&body))
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_use_is_exported_by_a_running_system() {
    let kafka = testkit::kafka();
    let name = testkit::unique_name("monitoring");
    let state = tempfile::tempdir().unwrap();
    let orders_topic = format!("{name}-orders");
    let mut command = Command::new(env!("CARGO_BIN_EXE_coffee"));
    for (variable, _) in coffee::config::variables() {
        command.env_remove(variable);
    }
    command
        .env_remove("CONFIG_FILE")
        .env("LOG_LEVEL", "warn")
        .args(["all", "--brokers", kafka.bootstrap_servers()]);
    for set in [
        format!("streams.application_id={name}-app"),
        format!("streams.input_topic={orders_topic}"),
        format!("producer.kafka_topic={orders_topic}"),
        format!("barista.orders_topic={orders_topic}"),
        format!("streams.output_topic={name}-processed"),
        format!("barista.processed_topic={name}-processed"),
        format!("streams.rejected_topic={name}-rejected"),
        format!("streams.stats_topic={name}-stats"),
        format!("streams.demand_topic={name}-demand"),
        format!("barista.group_id={name}-baristas"),
        format!("streams.state_dir={}", state.path().display()),
        "kafka.topic_partitions=2".into(),
        // One barista worker brewing a tenth of real time: a Cappuccino
        // keeps it busy for 9 s, long enough to cancel the next order
        // before its claim.
        "barista.workers=1".into(),
        "barista.speed_factor=0.1".into(),
        "barista.commit_interval_ms=100".into(),
        "producer.server_port=0".into(),
        "producer.grpc_port=0".into(),
        "gateway.server_port=0".into(),
        "streams.query_port=0".into(),
        "streams.metrics_port=0".into(),
        "barista.metrics_port=0".into(),
    ] {
        command.args(["--set", &set]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let ports = banner_ports(stdout);
    let port = |service: &str| -> u16 {
        *ports
            .get(service)
            .unwrap_or_else(|| panic!("the banner names no {service} metrics port: {ports:?}"))
    };
    let (gateway, producer) = (port("gateway"), port("producer"));
    assert_eq!(ports.len(), 4, "{ports:?}");

    // Every service answers its health probe.
    for (service, port) in &ports {
        let (status, body) = http(*port, "GET", "/health", "");
        assert_eq!(status, 200, "{service} /health: {body}");
        assert_eq!(json(&body)["status"], "ok", "{service} /health: {body}");
    }

    // A long drink occupies the one barista worker…
    let (status, first) = place(gateway, "Ada", "Cappuccino");
    assert_eq!(status, 200, "{first}");
    let first = first["order"]["id"].as_str().unwrap().to_owned();
    wait_for("the first order to brew", Duration::from_secs(60), || {
        (order_status(gateway, &first)? == "brewing").then_some(())
    });
    // …so the next one can be cancelled before the barista claims it.
    let (status, second) = place(gateway, "Bob", "Latte");
    assert_eq!(status, 200, "{second}");
    let second = second["order"]["id"].as_str().unwrap().to_owned();
    wait_for(
        "the pipeline to accept the order",
        Duration::from_secs(30),
        || order_status(gateway, &second),
    );
    let (status, cancelled) = http(gateway, "POST", &format!("/order/{second}/cancel"), "");
    // Granted (200), or still being decided on a busy machine (202); the
    // order is checked to be cancelled below.
    assert!(
        status == 200 || status == 202,
        "the cancel was not granted: {status} {cancelled}"
    );
    // Off the menu: rejected with 400 before it reaches Kafka.
    let (status, rejected) = place(gateway, "Cid", "Mocha");
    assert_eq!(status, 400, "{rejected}");
    // More orders, one straight to the producer.
    let mut placed = vec![first];
    for (port, customer, drink) in [(gateway, "Dee", "Espresso"), (producer, "Eve", "Americano")] {
        let (status, order) = place(port, customer, drink);
        assert_eq!(status, 200, "{order}");
        placed.push(order["order"]["id"].as_str().unwrap().to_owned());
    }
    let (status, list) = http(gateway, "GET", "/orders?customer=Ada", "");
    assert_eq!(status, 200, "{list}");
    // A record the pipeline cannot read: a dead letter.
    {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = kafka.client_config().create().unwrap();
        producer
            .send(
                BaseRecord::to(&orders_topic)
                    .key("not-an-order")
                    .payload("this is not JSON"),
            )
            .map_err(|(error, _)| error)
            .unwrap();
        producer.flush(Duration::from_secs(30)).unwrap();
    }
    for id in &placed {
        wait_for(
            &format!("order {id} to complete"),
            Duration::from_secs(120),
            || (order_status(gateway, id)? == "completed").then_some(()),
        );
    }
    assert_eq!(order_status(gateway, &second).as_deref(), Some("cancelled"));

    // Scrape until every name the queries use has appeared (consumer lag
    // comes from librdkafka's statistics, every 5 s) and the events above
    // show in the counters.
    let scrape_all = || -> BTreeMap<String, Scrape> {
        ports
            .iter()
            .map(|(service, port)| {
                let (status, body) = http(*port, "GET", "/metrics", "");
                assert_eq!(status, 200, "{service} /metrics");
                (service.clone(), Scrape::parse(&body))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let scrapes = loop {
        let scrapes = scrape_all();
        let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for scrape in scrapes.values() {
            for (name, (labels, _)) in &scrape.samples {
                exported
                    .entry(name.clone())
                    .or_default()
                    .extend(labels.iter().cloned());
            }
        }
        let problems = missing(&exported);
        let dead_letters = scrapes["streams"].total("engine_dead_letters_total");
        let completed = scrapes["barista"].total("coffee_orders_processed_total");
        if problems.is_empty() && dead_letters >= 1.0 && completed >= 3.0 {
            break scrapes;
        }
        assert!(
            Instant::now() < deadline,
            "after 90 s of scraping ({dead_letters} dead letters, {completed} drinks completed), \
             the dashboard and the alerts still query what no service exports:\n{}",
            problems.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // Each service exports its own families, counting what happened.
    let (gw, pr, st, ba) = (
        &scrapes["gateway"],
        &scrapes["producer"],
        &scrapes["streams"],
        &scrapes["barista"],
    );
    assert!(gw.total("coffee_orders_success_total") >= 3.0);
    assert!(pr.total("coffee_orders_success_total") >= 4.0);
    assert!(pr.total("kafka_messages_sent_total") >= 5.0);
    assert!(gw.total("http_requests_total") >= 7.0);
    assert!(st.total("engine_records_consumed_total") >= 5.0);
    assert!(st.total("engine_record_errors_total") >= 1.0);
    // The state gauges measure the stores: four orders in the status table,
    // kept in sled files.
    assert!(st.total("engine_state_store_entries") >= 4.0);
    assert!(st.total("engine_state_disk_bytes") > 0.0);
    assert!(ba.total("coffee_barista_skipped_total") >= 1.0);
    assert!(
        ba.samples
            .contains_key("coffee_order_preparation_seconds_bucket")
    );
    for (service, scrape) in &scrapes {
        assert!(!scrape.samples.is_empty(), "{service} exports nothing");
    }

    // The negative control: a name no service exports is reported.
    let mut exported = BTreeMap::new();
    for scrape in scrapes.values() {
        for (name, (labels, _)) in &scrape.samples {
            if name != "coffee_barista_queue_depth" {
                exported.insert(name.clone(), labels.clone());
            }
        }
    }
    let problems = missing(&exported);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("coffee_barista_queue_depth is not exported")),
        "{problems:?}"
    );

    // SIGTERM stops everything gracefully.
    let mut running = running;
    assert!(
        Command::new("kill")
            .args(["-TERM", &running.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_for("coffee all to stop", Duration::from_secs(60), || {
        running.0.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
}

/// The ports the monitoring guide and the scrape configuration name are the
/// binary's defaults.
#[test]
fn the_scrape_targets_are_the_services_default_ports() {
    let config = coffee::config::Layers::new(coffee::config::Service::All)
        .load()
        .unwrap();
    let expected = BTreeMap::from([
        (
            "coffee-producer",
            format!("producer:{}", config.producer.server_port),
        ),
        (
            "coffee-gateway",
            format!("gateway:{}", config.gateway.server_port),
        ),
        (
            "coffee-streams",
            format!("streams:{}", config.streams.metrics_port),
        ),
        (
            "coffee-barista",
            format!("barista:{}", config.barista.metrics_port),
        ),
    ]);
    let prometheus: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
    let mut jobs = BTreeMap::new();
    for job in prometheus["scrape_configs"].as_sequence().unwrap() {
        let targets: Vec<String> = job["static_configs"][0]["targets"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            job["metrics_path"].as_str().unwrap_or("/metrics"),
            "/metrics"
        );
        jobs.insert(job["job_name"].as_str().unwrap().to_owned(), targets);
    }
    for (job, target) in &expected {
        assert_eq!(jobs.get(*job), Some(&vec![target.clone()]), "{job}");
    }
    assert_eq!(jobs.len(), expected.len(), "{jobs:?}");
    let docs = read("docs/monitoring.md");
    for (_, target) in expected {
        let port = target.split(':').nth(1).unwrap();
        assert!(
            docs.contains(&format!("`{port}`")),
            "docs/monitoring.md does not name port {port}"
        );
    }
}
