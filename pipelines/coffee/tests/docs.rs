//! The documentation cannot drift from the code: every setting the config
//! structs accept is in docs/configuration.md, the topology diagram in
//! docs/architecture.md is the golden one, the README lists every guide,
//! and every link between the documents leads somewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{read, root};

use coffee::config::{Layers, Service};

/// The keys serde lists in its refusal of an unknown one: "unknown field
/// `x`, expected one of `a`, `b`" (or "expected `a` or `b`").
fn expected_keys(error: &str, what: &str) -> Vec<String> {
    let (_, expected) = error
        .split_once("`not_a_setting`, expected ")
        .unwrap_or_else(|| panic!("{what}: no list of keys in {error}"));
    let expected = expected.split(" (set by").next().unwrap();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The keys a config section accepts, as the binary's own loader names them
/// when it refuses an unknown one.
fn keys_of(section: &str) -> Vec<String> {
    let load = |text: String| {
        Layers::new(Service::All)
            .file_text("probe.toml", &text)
            .unwrap()
            .load()
    };
    if section == "barista" {
        // `[barista]` is the barista's own settings, flattened, plus its
        // metrics port; serde names the flattened struct's keys only when
        // that struct refuses a key itself.
        let error = serde_json::from_value::<coffee::barista::BaristaConfig>(
            serde_json::json!({"not_a_setting": 1}),
        )
        .unwrap_err()
        .to_string();
        let mut keys = expected_keys(&error, "[barista]");
        assert!(load("[barista]\nmetrics_port = 1\n".into()).is_ok());
        keys.push("metrics_port".into());
        return keys;
    }
    let error = load(format!("[{section}]\nnot_a_setting = 1\n"))
        .unwrap_err()
        .to_string();
    expected_keys(&error, &format!("[{section}]"))
}

/// The rows of the table under `## heading` whose first cell is a key.
fn documented_keys(docs: &str, heading: &str) -> Vec<String> {
    let start = docs
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading}"));
    docs[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .collect()
}

#[test]
fn every_setting_is_documented_in_its_section() {
    let docs = read("docs/configuration.md");
    for (section, heading) in [
        ("kafka", "## `[kafka]`"),
        ("producer", "## `[producer]`"),
        ("gateway", "## `[gateway]`"),
        ("streams", "## `[streams]`"),
        ("barista", "## `[barista]`"),
        ("log", "## `[log]`"),
    ] {
        let keys = keys_of(section);
        assert!(keys.len() >= 2, "[{section}]: {keys:?}");
        let documented = documented_keys(&docs, heading);
        for key in &keys {
            // The producer's menu is the shared `menu` table.
            if section == "producer" && key == "menu" {
                assert!(docs.contains("## `menu`"));
                continue;
            }
            assert!(
                documented.contains(key),
                "{section}.{key} is not in the table under {heading} of docs/configuration.md"
            );
        }
        for key in &documented {
            assert!(
                keys.contains(key),
                "docs/configuration.md documents {section}.{key}, which the binary does not accept"
            );
        }
    }
}

#[test]
fn the_topology_diagram_in_the_architecture_guide_is_the_golden_one() {
    let docs = read("docs/architecture.md");
    let section = &docs[docs.find("## The topology").unwrap()..];
    let block = section
        .split("```mermaid\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    assert_eq!(block, read("pipelines/coffee/tests/golden/coffee.mmd"));
}

#[test]
fn the_readme_lists_every_guide() {
    let readme = read("README.md");
    let list = &readme[readme.find("## Documentation").unwrap()..];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if Path::new(&name).extension().is_some_and(|e| e == "md") {
            assert!(
                list.contains(&format!("(docs/{name})")),
                "README's documentation list does not link docs/{name}"
            );
        }
    }
}

/// Relative links `](path)` and `](path#anchor)` in the README and the
/// guides name files that exist.
#[test]
fn every_link_between_the_documents_resolves() {
    let mut documents = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path.strip_prefix(root()).unwrap().to_owned());
        }
    }
    for document in documents {
        let text = read(document.to_str().unwrap());
        let base = root().join(&document);
        let dir = base.parent().unwrap();
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap();
            let target = target.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            assert!(
                dir.join(target).exists(),
                "{}: the link {target} leads nowhere",
                document.display()
            );
        }
    }
}
