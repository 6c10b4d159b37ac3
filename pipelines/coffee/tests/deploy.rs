//! The deployment files in `deploy/` agree with the binary they deploy. No
//! container engine or cluster is needed: every YAML file is parsed, the
//! kustomize overlays are rendered with `kubectl kustomize`, and then, for
//! every container that runs the `coffee` image (in Kubernetes and in
//! compose):
//!
//! - its command is a real subcommand with real flags (the binary itself
//!   parses it, with `--help`);
//! - every environment variable is one the binary reads;
//! - its settings (config file from the ConfigMap, environment, `--set`
//!   flags) load through the binary's own configuration layers, and the
//!   container ports, probe ports and paths, Prometheus annotations,
//!   Services and the addresses services use to reach each other all match
//!   the ports those settings give;
//! - the streams application's volume is mounted at its `state_dir`.
//!
//! The Dockerfile is checked the same way, statically.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{read, root};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use coffee::config::{Config, Layers, Service};
use serde_yaml::Value;

/// Every document of a YAML stream, with `<<` merge keys applied.
fn documents(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

use serde::Deserialize as _;

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn seq(value: &Value) -> &[Value] {
    value.as_sequence().map_or(&[], Vec::as_slice)
}

/// Every variable the binary reads.
fn known_variables() -> BTreeSet<String> {
    coffee::config::variables()
        .map(|(name, _)| name.to_owned())
        .chain(["CONFIG_FILE".to_owned(), "RUST_LOG".to_owned()])
        .collect()
}

/// A map key for a service.
fn key(service: Service) -> String {
    format!("{service:?}")
}

/// The service a subcommand starts.
fn service_of(subcommand: &str) -> Service {
    match subcommand {
        "producer" => Service::Producer,
        "gateway" => Service::Gateway,
        "streams" => Service::Streams,
        "consumer" => Service::Consumer,
        "all" => Service::All,
        other => panic!("{other} is not a service subcommand"),
    }
}

/// The binary parses `args` (the subcommand and its flags): `--help`
/// succeeds only for a real subcommand with real flags.
fn assert_real_command(args: &[String], what: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_coffee"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{what}: `coffee {}` is not a command the binary accepts: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A service's settings as the binary would load them in this container.
fn load(
    service: Service,
    file: Option<(&str, &str)>,
    env: &BTreeMap<String, String>,
    args: &[String],
    what: &str,
) -> Config {
    let mut layers = Layers::new(service);
    if let Some((name, text)) = file {
        layers = layers
            .file_text(name, text)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    layers = layers
        .env(|name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut flags = args.iter().skip(1);
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--set" => {
                layers = layers
                    .set(flags.next().unwrap())
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            other => panic!("{what}: the test does not know the flag {other}; use --set"),
        }
    }
    layers.load().unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The ports a service listens on, and the one with `/health` and `/metrics`.
struct Ports {
    all: BTreeSet<u16>,
    http: u16,
}

fn ports_of(service: Service, config: &Config) -> Ports {
    match service {
        Service::Producer => Ports {
            all: BTreeSet::from([config.producer.server_port, config.producer.grpc_port]),
            http: config.producer.server_port,
        },
        Service::Gateway => Ports {
            all: BTreeSet::from([config.gateway.server_port]),
            http: config.gateway.server_port,
        },
        Service::Streams => Ports {
            all: BTreeSet::from([config.streams.query_port, config.streams.metrics_port]),
            http: config.streams.metrics_port,
        },
        Service::Consumer => Ports {
            all: BTreeSet::from([config.barista.metrics_port]),
            http: config.barista.metrics_port,
        },
        Service::All => panic!("`coffee all` is not deployed as a service"),
    }
}

/// `http://host:port` → (host, port).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap())
}

/// Where this container's service reaches the others: (setting, host, port, the
/// service and the port key it must reach).
fn upstreams(service: Service, config: &Config) -> Vec<(&'static str, String, u16, Service)> {
    let mut out = Vec::new();
    let mut add = |key, url: &str, to| {
        let (host, port) = host_port(url);
        out.push((key, host, port, to));
    };
    match service {
        Service::Producer => add(
            "producer.consumer_grpc_address",
            &config.producer.consumer_grpc_address,
            Service::Streams,
        ),
        Service::Gateway => {
            add(
                "gateway.producer_grpc_address",
                &config.gateway.producer_grpc_address,
                Service::Producer,
            );
            add(
                "gateway.consumer_grpc_address",
                &config.gateway.consumer_grpc_address,
                Service::Streams,
            );
        }
        _ => {}
    }
    out
}

/// The port a service must be reached on for `to`: the producer's gRPC,
/// the query service.
fn upstream_port(to: Service, config: &Config) -> u16 {
    match to {
        Service::Producer => config.producer.grpc_port,
        Service::Streams => config.streams.query_port,
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------------------
// Every YAML file parses.
// ---------------------------------------------------------------------------

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("deploy/kafka/cache") {
                yaml_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    assert!(files.len() >= 15, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs = documents(&text, &file.display().to_string());
        assert!(!docs.is_empty(), "{} is empty", file.display());
    }
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

/// How to render a kustomization: `kubectl kustomize` when kubectl embeds
/// kustomize v4 or newer (kubectl 1.21+), else a `kustomize` binary (on
/// the PATH, or where scripts/test.sh builds it); one clear line when
/// there is neither.
fn kustomize_command() -> Vec<String> {
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let modern = kubectl
        .lines()
        .find_map(|line| line.strip_prefix("Kustomize Version: v"))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .is_some_and(|major| major >= 4);
    if modern {
        return vec!["kubectl".into(), "kustomize".into()];
    }
    let built = root().join("target/tools/bin/kustomize");
    for candidate in [PathBuf::from("kustomize"), built] {
        if Command::new(&candidate).arg("version").output().is_ok() {
            return vec![candidate.display().to_string(), "build".into()];
        }
    }
    panic!(
        "kustomize v4+ is missing: run scripts/test.sh (it builds one), or install kubectl 1.21 or newer"
    )
}

/// Renders a kustomization.
fn kustomize(dir: &str) -> Vec<Value> {
    let command = kustomize_command();
    let output = Command::new(&command[0])
        .args(&command[1..])
        .arg(dir)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", command[0]));
    assert!(
        output.status.success(),
        "{} {dir}: {}",
        command.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    documents(&String::from_utf8(output.stdout).unwrap(), dir)
}

/// The rendered objects of one overlay, by kind and name.
struct Rendered {
    objects: BTreeMap<(String, String), Value>,
}

impl Rendered {
    fn new(docs: Vec<Value>) -> Self {
        let mut objects = BTreeMap::new();
        for doc in docs {
            let kind = str_of(&doc["kind"], "kind").to_owned();
            let name = str_of(&doc["metadata"]["name"], "name").to_owned();
            assert!(
                objects.insert((kind.clone(), name.clone()), doc).is_none(),
                "{kind} {name} twice"
            );
        }
        Self { objects }
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.objects
            .iter()
            .filter(move |((k, _), _)| k == kind)
            .map(|((_, name), value)| (name.as_str(), value))
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.to_owned(), name.to_owned()))
    }

    /// Deployments and StatefulSets.
    fn workloads(&self) -> Vec<(&str, &Value)> {
        self.of_kind("Deployment")
            .chain(self.of_kind("StatefulSet"))
            .collect()
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let Some(selector) = selector.as_mapping() else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A container port by name or number.
fn resolve_port(container: &Value, port: &Value) -> Option<u16> {
    let ports = seq(&container["ports"]);
    match port {
        Value::Number(n) => {
            let n = u16::try_from(n.as_u64()?).ok()?;
            ports
                .iter()
                .any(|p| p["containerPort"].as_u64() == Some(u64::from(n)))
                .then_some(n)
        }
        Value::String(name) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

/// What one coffee container runs, with its loaded settings.
struct Deployed {
    workload: String,
    service: Service,
    config: Config,
    /// Pod labels.
    labels: Value,
}

/// Checks one coffee container of a rendered workload.
fn check_container(
    rendered: &Rendered,
    workload: &str,
    pod: &Value,
    container: &Value,
    known: &BTreeSet<String>,
) -> Deployed {
    let what = format!(
        "{workload}/{}",
        str_of(&container["name"], "container name")
    );
    assert!(
        container["command"].is_null(),
        "{what}: keep the image's entrypoint (coffee); put the subcommand in args"
    );
    // Environment: literal values, fieldRefs (a sample value) and envFrom ConfigMaps.
    let mut env = BTreeMap::new();
    for var in seq(&container["env"]) {
        let name = str_of(&var["name"], "env name").to_owned();
        let value = match var["value"].as_str() {
            Some(value) => value.to_owned(),
            None => {
                assert!(
                    !var["valueFrom"]["fieldRef"].is_null(),
                    "{what}: {name} has neither a value nor a fieldRef"
                );
                format!("{workload}-0")
            }
        };
        env.insert(name, value);
    }
    for from in seq(&container["envFrom"]) {
        let name = str_of(&from["configMapRef"]["name"], "envFrom configMapRef");
        let map = rendered
            .get("ConfigMap", name)
            .unwrap_or_else(|| panic!("{what}: no ConfigMap {name}"));
        for (key, value) in map["data"].as_mapping().unwrap() {
            env.insert(
                str_of(key, "key").to_owned(),
                str_of(value, "value").to_owned(),
            );
        }
    }
    // $(NAME) in args is expanded by Kubernetes from the container's env.
    let mut args: Vec<String> = seq(&container["args"])
        .iter()
        .map(|a| str_of(a, "arg").to_owned())
        .collect();
    let mut expanded = BTreeSet::new();
    for arg in &mut args {
        for (name, value) in &env {
            let reference = format!("$({name})");
            if arg.contains(&reference) {
                *arg = arg.replace(&reference, value);
                expanded.insert(name.clone());
            }
        }
        assert!(!arg.contains("$("), "{what}: {arg} names an unset variable");
    }
    for name in env.keys() {
        assert!(
            known.contains(name) || expanded.contains(name),
            "{what}: the binary does not read the environment variable {name}"
        );
    }
    assert!(!args.is_empty(), "{what}: no subcommand in args");
    assert_real_command(&args, &what);
    let service = service_of(&args[0]);

    // The config file CONFIG_FILE names, from the ConfigMap mounted there.
    let file = env.get("CONFIG_FILE").map(|path| {
        let path = Path::new(path);
        let dir = path.parent().unwrap().to_str().unwrap();
        let mount = seq(&container["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(dir))
            .unwrap_or_else(|| panic!("{what}: nothing is mounted at {dir} for CONFIG_FILE"));
        let volume = seq(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("{what}: no volume {:?}", mount["name"]));
        let map_name = str_of(&volume["configMap"]["name"], "configMap volume");
        let map = rendered
            .get("ConfigMap", map_name)
            .unwrap_or_else(|| panic!("{what}: no ConfigMap {map_name}"));
        let key = path.file_name().unwrap().to_str().unwrap();
        let text = str_of(&map["data"][key], "config file").to_owned();
        (path.display().to_string(), text)
    });
    let config = load(
        service,
        file.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        &env,
        &args,
        &what,
    );
    let ports = ports_of(service, &config);

    // The container declares exactly the ports the service listens on.
    let declared: BTreeSet<u16> = seq(&container["ports"])
        .iter()
        .map(|p| u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(declared, ports.all, "{what}: container ports");

    // Probes: /health on the HTTP port.
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert!(!get.is_null(), "{what}: no HTTP {probe}");
        assert_eq!(
            get["path"].as_str(),
            Some("/health"),
            "{what}: {probe} path"
        );
        assert_eq!(
            resolve_port(container, &get["port"]),
            Some(ports.http),
            "{what}: {probe} port"
        );
    }
    // Prometheus scrapes /metrics on the same port.
    let annotations = &pod_template_metadata(rendered, workload)["annotations"];
    assert_eq!(
        annotations["prometheus.io/scrape"].as_str(),
        Some("true"),
        "{what}"
    );
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(ports.http.to_string().as_str()),
        "{what}: prometheus.io/port"
    );
    assert_eq!(
        annotations["prometheus.io/path"].as_str(),
        Some("/metrics"),
        "{what}"
    );

    // Requests and limits.
    let resources = &container["resources"];
    for key in ["cpu", "memory"] {
        assert!(
            !resources["requests"][key].is_null(),
            "{what}: no {key} request"
        );
    }
    assert!(
        !resources["limits"]["memory"].is_null(),
        "{what}: no memory limit"
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{what}"
    );

    // The streams application keeps its state on a persistent volume.
    if service == Service::Streams {
        let state_dir = config.streams.state_dir.to_str().unwrap();
        let mount = seq(&container["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(state_dir))
            .unwrap_or_else(|| panic!("{what}: nothing is mounted at state_dir {state_dir}"));
        let set = rendered
            .get("StatefulSet", workload)
            .unwrap_or_else(|| panic!("{what}: the streams application must be a StatefulSet"));
        assert!(
            seq(&set["spec"]["volumeClaimTemplates"])
                .iter()
                .any(|t| t["metadata"]["name"] == mount["name"]),
            "{what}: {state_dir} is not a volume claim template"
        );
    }
    Deployed {
        workload: workload.to_owned(),
        service,
        config,
        labels: pod_template_metadata(rendered, workload)["labels"].clone(),
    }
}

fn pod_template_metadata<'a>(rendered: &'a Rendered, workload: &str) -> &'a Value {
    let object = rendered
        .get("Deployment", workload)
        .or_else(|| rendered.get("StatefulSet", workload))
        .unwrap();
    &object["spec"]["template"]["metadata"]
}

/// The Service `host` names, the port it exposes as `port`, and the
/// container port that reaches (on the pods it selects).
fn service_target(rendered: &Rendered, host: &str, port: u16) -> Option<(Value, u16)> {
    let service = rendered.get("Service", host)?;
    let entry = seq(&service["spec"]["ports"])
        .iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))?;
    let target = if entry["targetPort"].is_null() {
        entry["port"].clone()
    } else {
        entry["targetPort"].clone()
    };
    let selector = &service["spec"]["selector"];
    for (_, workload) in rendered.workloads() {
        let template = &workload["spec"]["template"];
        if labels_match(selector, &template["metadata"]["labels"]) {
            for container in seq(&template["spec"]["containers"]) {
                if let Some(resolved) = resolve_port(container, &target) {
                    return Some((template["metadata"]["labels"].clone(), resolved));
                }
            }
        }
    }
    None
}

fn check_overlay(dir: &str, brings_kafka: bool) {
    let rendered = Rendered::new(kustomize(dir));
    let known = known_variables();
    let mut deployed = Vec::new();
    for (name, workload) in rendered.workloads() {
        let pod = &workload["spec"]["template"]["spec"];
        // The selector selects the pod template.
        assert!(
            labels_match(
                &workload["spec"]["selector"]["matchLabels"],
                &workload["spec"]["template"]["metadata"]["labels"]
            ),
            "{dir}: {name}'s selector does not match its pods"
        );
        for container in seq(&pod["containers"]) {
            let image = str_of(&container["image"], "image");
            if image == "coffee" || image.starts_with("coffee:") {
                deployed.push(check_container(&rendered, name, pod, container, &known));
            }
        }
    }
    let services: BTreeMap<String, &Deployed> =
        deployed.iter().map(|d| (key(d.service), d)).collect();
    assert_eq!(deployed.len(), 4, "{dir}: one container per service");
    for (service, kind) in [
        (Service::Producer, "Deployment"),
        (Service::Gateway, "Deployment"),
        (Service::Consumer, "Deployment"),
        (Service::Streams, "StatefulSet"),
    ] {
        let deployed = services
            .get(&key(service))
            .unwrap_or_else(|| panic!("{dir}: {service:?} is not deployed"));
        assert!(
            rendered.get(kind, &deployed.workload).is_some(),
            "{dir}: {service:?} must be a {kind}"
        );
    }

    // Services reach the pods they select, on ports the pods declare.
    for (name, service) in rendered.of_kind("Service") {
        for port in seq(&service["spec"]["ports"]) {
            let number = u16::try_from(port["port"].as_u64().unwrap()).unwrap();
            assert!(
                service_target(&rendered, name, number).is_some(),
                "{dir}: Service {name} port {number} reaches no container port"
            );
        }
    }
    // Each service reaches the others where they listen.
    for from in &deployed {
        for (setting, host, port, to) in upstreams(from.service, &from.config) {
            let target = services[&key(to)];
            let (labels, reached) = service_target(&rendered, &host, port).unwrap_or_else(|| {
                panic!(
                    "{dir}: {} {setting} = {host}:{port} is no Service port",
                    from.workload
                )
            });
            assert_eq!(
                labels, target.labels,
                "{dir}: {setting} reaches another workload"
            );
            assert_eq!(
                reached,
                upstream_port(to, &target.config),
                "{dir}: {} {setting} reaches the wrong port",
                from.workload
            );
        }
        if brings_kafka {
            for broker in &from.config.kafka.brokers {
                let (host, port) = broker.rsplit_once(':').unwrap();
                assert!(
                    service_target(&rendered, host, port.parse().unwrap()).is_some(),
                    "{dir}: {} reaches Kafka at {broker}, which is no Service",
                    from.workload
                );
            }
        }
    }
    // Every coffee workload has a disruption budget; producer and gateway scale.
    for d in &deployed {
        assert!(
            rendered
                .of_kind("PodDisruptionBudget")
                .any(|(_, pdb)| labels_match(&pdb["spec"]["selector"]["matchLabels"], &d.labels)),
            "{dir}: {} has no PodDisruptionBudget",
            d.workload
        );
        let scaled = rendered.of_kind("HorizontalPodAutoscaler").any(|(_, hpa)| {
            hpa["spec"]["scaleTargetRef"]["name"].as_str() == Some(&d.workload)
                && hpa["spec"]["scaleTargetRef"]["kind"].as_str() == Some("Deployment")
        });
        let should = matches!(d.service, Service::Producer | Service::Gateway);
        assert_eq!(scaled, should, "{dir}: HPA of {}", d.workload);
    }
    for (name, hpa) in rendered.of_kind("HorizontalPodAutoscaler") {
        let min = hpa["spec"]["minReplicas"].as_u64().unwrap();
        let max = hpa["spec"]["maxReplicas"].as_u64().unwrap();
        assert!(1 <= min && min <= max, "{dir}: HPA {name} {min}..{max}");
    }
    if brings_kafka {
        let kafka = read("deploy/kafka/pom.xml");
        let version = pinned_kafka(&kafka);
        let image = format!("apache/kafka:{version}");
        assert!(
            rendered.workloads().iter().any(|(_, w)| seq(
                &w["spec"]["template"]["spec"]["containers"]
            )
            .iter()
            .any(|c| c["image"].as_str() == Some(&image))),
            "{dir}: no {image}"
        );
    }
}

fn pinned_kafka(pom: &str) -> String {
    pom.split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned()
}

#[test]
fn the_kubernetes_base_matches_the_binary() {
    check_overlay("deploy/k8s/base", false);
}

#[test]
fn the_dev_overlay_matches_the_binary_and_brings_kafka() {
    check_overlay("deploy/k8s/overlays/dev", true);
}

/// The checks can fail: a probe on the wrong port, an unknown variable and
/// an unknown subcommand are each caught.
#[test]
fn a_broken_manifest_is_caught() {
    let base = kustomize("deploy/k8s/base");
    let rendered = |edit: &dyn Fn(&mut Value)| {
        let mut docs = base.clone();
        for doc in &mut docs {
            if doc["kind"] == "Deployment" && doc["metadata"]["name"] == "gateway" {
                edit(&mut doc["spec"]["template"]["spec"]["containers"][0]);
            }
        }
        Rendered::new(docs)
    };
    let check = |rendered: Rendered| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (_, workload) = rendered
                .workloads()
                .into_iter()
                .find(|(name, _)| *name == "gateway")
                .unwrap();
            let pod = &workload["spec"]["template"]["spec"];
            check_container(
                &rendered,
                "gateway",
                pod,
                &pod["containers"][0],
                &known_variables(),
            );
        }))
        .map_err(|panic| panic.downcast_ref::<String>().cloned().unwrap_or_default())
    };
    assert!(check(rendered(&|_| {})).is_ok());
    let error = check(rendered(&|c| {
        c["readinessProbe"]["httpGet"]["port"] = Value::from(9090);
    }))
    .unwrap_err();
    assert!(error.contains("readinessProbe port"), "{error}");
    let error = check(rendered(&|c| {
        c["env"]
            .as_sequence_mut()
            .unwrap()
            .push(serde_yaml::from_str("{name: GATEWAY_PORT, value: \"8080\"}").unwrap());
    }))
    .unwrap_err();
    assert!(error.contains("GATEWAY_PORT"), "{error}");
    let error = check(rendered(&|c| {
        c["args"] = serde_yaml::from_str("[api-gateway]").unwrap();
    }))
    .unwrap_err();
    assert!(error.contains("api-gateway"), "{error}");
}

/// The kustomize commands docs/docker-kubernetes.md shows, run as shown.
#[test]
fn the_kustomize_commands_in_the_guide_render() {
    let docs = read("docs/docker-kubernetes.md");
    let dirs: Vec<&str> = docs
        .lines()
        .filter_map(|line| line.trim().strip_prefix("kubectl kustomize "))
        .collect();
    assert!(dirs.len() >= 2, "{dirs:?}");
    for dir in dirs {
        assert!(!kustomize(dir.trim()).is_empty());
    }
}

// ---------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------

/// The default ports of every service.
fn default_ports() -> BTreeSet<u16> {
    [
        Service::Producer,
        Service::Gateway,
        Service::Streams,
        Service::Consumer,
    ]
    .into_iter()
    .flat_map(|service| ports_of(service, &Layers::new(service).load().unwrap()).all)
    .collect()
}

#[test]
fn the_compose_file_matches_the_binary() {
    let compose = documents(&read("deploy/docker/compose.yaml"), "compose.yaml")
        .pop()
        .unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| str_of(k, "service")).collect();
    let known = known_variables();
    let mut host_ports = BTreeSet::new();
    let mut deployed: BTreeMap<String, (Service, String, Config)> = BTreeMap::new();
    for (name, service) in services {
        let name = str_of(name, "service");
        for dependency in service["depends_on"].as_mapping().into_iter().flatten() {
            let dependency = str_of(dependency.0, "depends_on");
            assert!(names.contains(dependency), "{name} depends on {dependency}");
        }
        let mut published = BTreeSet::new();
        for mapping in seq(&service["ports"]) {
            let (host, container) = str_of(mapping, "port").split_once(':').unwrap();
            assert!(host_ports.insert(host.to_owned()), "host port {host} twice");
            published.insert(container.parse::<u16>().unwrap());
        }
        assert!(
            !service["healthcheck"]["test"].is_null(),
            "{name} has no health check"
        );
        let image = service["image"].as_str().unwrap_or_default();
        if !image.starts_with("coffee:") {
            continue;
        }
        let args: Vec<String> = seq(&service["command"])
            .iter()
            .map(|a| str_of(a, "command").to_owned())
            .collect();
        assert_real_command(&args, name);
        let env: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => panic!("{name}: quote the value of {k:?}: {other:?}"),
                };
                (str_of(k, "variable").to_owned(), value)
            })
            .collect();
        for variable in env.keys() {
            assert!(
                known.contains(variable),
                "{name}: the binary does not read {variable}"
            );
        }
        let kind = service_of(&args[0]);
        let config = load(kind, None, &env, &args, name);
        let ports = ports_of(kind, &config);
        assert!(
            published.is_subset(&ports.all),
            "{name}: publishes {published:?}, listens on {:?}",
            ports.all
        );
        let health = seq(&service["healthcheck"]["test"])
            .iter()
            .map(|a| str_of(a, "test"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            health.contains(&format!("localhost:{}/health", ports.http)),
            "{name}: health check {health} is not /health on {}",
            ports.http
        );
        if kind == Service::Streams {
            let state_dir = config.streams.state_dir.display().to_string();
            assert!(
                seq(&service["volumes"])
                    .iter()
                    .any(|v| str_of(v, "volume").ends_with(&format!(":{state_dir}"))),
                "{name}: no volume at state_dir {state_dir}"
            );
        }
        for broker in &config.kafka.brokers {
            let (host, _) = broker.rsplit_once(':').unwrap();
            assert!(names.contains(host), "{name}: no Kafka service {host}");
            let advertised = services
                .get(host)
                .and_then(|k| k["environment"]["KAFKA_ADVERTISED_LISTENERS"].as_str())
                .unwrap();
            assert!(
                advertised.contains(broker.as_str()),
                "{advertised} vs {broker}"
            );
        }
        deployed.insert(key(kind), (kind, name.to_owned(), config));
    }
    assert_eq!(
        deployed.len(),
        4,
        "{deployed:?}",
        deployed = deployed.keys()
    );
    // Each service reaches the others where they listen.
    for (kind, name, config) in deployed.values() {
        for (setting, host, port, to) in upstreams(*kind, config) {
            let (_, target, target_config) = &deployed[&key(to)];
            assert_eq!(&host, target, "{name}: {setting}");
            assert_eq!(port, upstream_port(to, target_config), "{name}: {setting}");
        }
    }
    // Prometheus scrapes the services at the ports they serve /metrics on.
    let prometheus: Value =
        serde_yaml::from_str(&read("deploy/prometheus/prometheus.yml")).unwrap();
    let mut scraped = BTreeSet::new();
    for job in seq(&prometheus["scrape_configs"]) {
        for target in seq(&job["static_configs"][0]["targets"]) {
            let (host, port) = str_of(target, "target").rsplit_once(':').unwrap();
            let (kind, _, config) = deployed
                .values()
                .find(|(_, name, _)| name == host)
                .unwrap_or_else(|| panic!("Prometheus scrapes {host}, which compose does not run"));
            assert_eq!(
                port.parse::<u16>().unwrap(),
                ports_of(*kind, config).http,
                "{host}"
            );
            scraped.insert(key(*kind));
        }
    }
    assert_eq!(scraped.len(), 4, "Prometheus does not scrape every service");
    let volumes = |service: &str| -> Vec<String> {
        seq(&services[service]["volumes"])
            .iter()
            .map(|v| str_of(v, "volume").to_owned())
            .collect()
    };
    assert!(
        volumes("prometheus")
            .iter()
            .any(|v| v.starts_with("../prometheus:/etc/prometheus")),
        "Prometheus does not get deploy/prometheus"
    );
    // Grafana: off the producer's port, provisioned from deploy/grafana.
    let grafana = &services["grafana"];
    let port = grafana["environment"]["GF_SERVER_HTTP_PORT"]
        .as_str()
        .unwrap();
    assert_ne!(port, "3000", "Grafana's default port is the producer's");
    assert!(
        seq(&grafana["ports"])
            .iter()
            .any(|p| p.as_str() == Some(&format!("{port}:{port}")))
    );
    let grafana_volumes = volumes("grafana");
    assert!(
        grafana_volumes
            .iter()
            .any(|v| v.starts_with("../grafana/provisioning:/etc/grafana/provisioning"))
    );
    let provider: Value =
        serde_yaml::from_str(&read("deploy/grafana/provisioning/dashboards/coffee.yml")).unwrap();
    let path = str_of(
        &provider["providers"][0]["options"]["path"],
        "dashboards path",
    );
    assert!(
        grafana_volumes
            .iter()
            .any(|v| v == &format!("../grafana/dashboards:{path}:ro")),
        "the dashboards are not mounted at {path}"
    );
    let datasource: Value = serde_yaml::from_str(&read(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
    ))
    .unwrap();
    assert_eq!(
        datasource["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let dashboard = read("deploy/grafana/dashboards/coffee.json");
    let uid = datasource["datasources"][0]["uid"].as_str().unwrap();
    assert!(dashboard.contains(&format!("\"uid\": \"{uid}\"")));
    // Kafka: KRaft, the version the tests run.
    let kafka = &services["kafka"];
    let version = pinned_kafka(&read("deploy/kafka/pom.xml"));
    assert_eq!(
        kafka["image"].as_str(),
        Some(format!("apache/kafka:{version}").as_str())
    );
    assert!(
        kafka["environment"]["KAFKA_PROCESS_ROLES"]
            .as_str()
            .unwrap()
            .contains("controller")
    );
    // No clash with the ports the issue lists as taken, or with each other.
    let all = default_ports();
    assert_eq!(all.len(), 6, "two services share a default port: {all:?}");
    assert!(!all.contains(&9092) && !all.contains(&9090));
}

#[test]
fn the_dockerfile_builds_a_small_non_root_image_of_the_binary() {
    let dockerfile = read("deploy/docker/Dockerfile");
    // Continuation lines joined, comments dropped.
    let text = dockerfile
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let instructions: Vec<(String, String)> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (op, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            (op.to_ascii_uppercase(), rest.trim().to_owned())
        })
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "not a multi-stage build");
    let runtime = &instructions[*stages.last().unwrap()..];
    let from = &runtime[0].1;
    assert!(
        from.contains("-slim") || from.contains("distroless"),
        "the runtime image is not a small one: {from}"
    );
    let get = |op: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    let user = *get("USER").last().expect("the runtime stage sets no USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "runs as root: {user}");
    assert_eq!(get("ENTRYPOINT"), ["[\"coffee\"]"]);
    assert!(get("COPY").iter().any(|c| c.starts_with("--from=")));
    // The default command is a real one.
    let cmd: Vec<String> = serde_json::from_str(get("CMD")[0]).unwrap();
    assert_real_command(&cmd, "Dockerfile CMD");
    // The build is the locked release build of the binary.
    assert!(
        text.contains("cargo build --release --locked -p coffee"),
        "the build stage does not build the coffee binary"
    );
    // Every ENV is a variable the binary reads, and STATE_DIR is where the
    // image prepares a directory for the non-root user and Kubernetes
    // mounts the volume.
    let known = known_variables();
    for env in get("ENV") {
        let (name, value) = env.split_once('=').unwrap();
        assert!(known.contains(name), "ENV {name} is not read by the binary");
        if name == "STATE_DIR" {
            assert!(text.contains("-o coffee -g coffee") && text.contains(value));
            let k8s = read("deploy/k8s/base/coffee.yaml");
            assert!(k8s.contains(&format!("state_dir: {value}")), "{value}");
        }
    }
    // EXPOSE lists the services' default ports.
    let exposed: BTreeSet<u16> = get("EXPOSE")
        .iter()
        .flat_map(|ports| ports.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(exposed, default_ports());
    // The toolchain is at least the workspace's minimum.
    let minimum = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let arg = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .unwrap();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(version(arg) >= version(&minimum), "Rust {arg} < {minimum}");
    // The build context leaves out what the build does not read.
    let ignore = read("deploy/docker/Dockerfile.dockerignore");
    for path in ["target", ".git", "deploy/kafka/cache"] {
        assert!(
            ignore.lines().any(|l| l.trim() == path),
            "{path} is sent to the builder"
        );
    }
}
