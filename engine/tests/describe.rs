//! Proves that `Topology::describe()` is stable: the text and Mermaid descriptions of example
//! topologies match the golden files in `tests/golden/`, sub-topologies split at repartitions,
//! and repartition topics keep their names when other operators are added.
//!
//! To accept a deliberate change of the descriptions, regenerate the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p engine --test describe` and review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;

use engine::serdes::{Json, Utf8};
use engine::{Repartitioned, StreamsBuilder, TestDriver, Topology};

// ---------------------------------------------------------------------------------------------
// Golden files
// ---------------------------------------------------------------------------------------------

/// Compares `actual` with `tests/golden/<name>`, or rewrites that file when `UPDATE_GOLDEN=1`.
fn assert_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read golden file {}: {error}\n\
             run `UPDATE_GOLDEN=1 cargo test -p engine --test describe` to create it",
            path.display()
        )
    });
    // A checkout may have turned the file's line ends into CRLF.
    let expected = expected.replace("\r\n", "\n");
    if expected != actual {
        panic!(
            "{} does not match the golden file {}\n\
             (- golden, + actual; if the change is intended, rerun with UPDATE_GOLDEN=1)\n{}",
            name,
            path.display(),
            line_diff(&expected, actual)
        );
    }
}

/// A line diff of two texts (longest common subsequence): unchanged lines start with two
/// spaces, lines only in `expected` with `- `, lines only in `actual` with `+ `.
fn line_diff(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    // common[i][j]: length of the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            out.push_str(&format!("  {}\n", old[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < new.len() && (i == old.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push_str(&format!("+ {}\n", new[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", old[i]));
            i += 1;
        }
    }
    if expected != actual && expected.lines().eq(actual.lines()) {
        out.push_str("(the texts differ only in their final line end)\n");
    }
    out
}

#[test]
fn line_diff_marks_removed_added_and_kept_lines() {
    assert_eq!(
        line_diff("a\nb\nc\nd\n", "a\nc\nX\nd\n"),
        "  a\n- b\n  c\n+ X\n  d\n"
    );
    assert_eq!(line_diff("same\n", "same\n"), "  same\n");
    assert!(line_diff("x\n", "x").contains("final line end"));
}

// ---------------------------------------------------------------------------------------------
// Example topologies
// ---------------------------------------------------------------------------------------------

/// A sensor reading, for the alerting example.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Reading {
    sensor: String,
    celsius: f64,
}

/// An order, for the merge example.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Order {
    customer: String,
    drink: String,
}

/// Words of text lines, re-keyed by word and repartitioned so that each word lives in one
/// partition. With `trim_first`, an extra stateless operator runs before everything else.
fn word_count(trim_first: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let mut lines = builder.stream("text-lines", Utf8, Utf8);
    if trim_first {
        lines = lines.map_values(|line: String| line.trim().to_owned());
    }
    lines
        .flat_map(|_, line: String| {
            line.split_whitespace()
                .map(|word| (String::new(), word.to_lowercase()))
                .collect::<Vec<_>>()
        })
        .filter(|_, word| word.chars().any(char::is_alphanumeric))
        .select_key(|_, word: &String| word.clone())
        .repartition("words", Utf8, Utf8)
        .map_values(|_word| 1u32)
        .to("word-occurrences", Utf8, Json::<u32>::new());
    builder.build().unwrap()
}

/// Readings split into critical, warning and normal levels, each to its own topic.
fn alerting() -> Topology {
    let builder = StreamsBuilder::new();
    let mut levels = builder
        .stream("sensor-readings", Utf8, Json::<Reading>::new())
        .filter(|_, reading| reading.celsius.is_finite())
        .name("valid-readings")
        .split("level")
        .branch("critical", |_, reading| reading.celsius >= 90.0)
        .branch("warning", |_, reading| reading.celsius >= 70.0)
        .default_branch("normal");
    levels
        .take("critical")
        .unwrap()
        .map_values(|r: Reading| format!("{} is at {} °C", r.sensor, r.celsius))
        .name("page-text")
        .to("pager", Utf8, Utf8);
    levels
        .take("warning")
        .unwrap()
        .to("alerts", Utf8, Json::<Reading>::new());
    levels
        .take("normal")
        .unwrap()
        .to("readings-ok", Utf8, Json::<Reading>::new());
    builder.build().unwrap()
}

/// Orders from two channels, merged and repartitioned by customer into 6 partitions.
fn merged_orders() -> Topology {
    let builder = StreamsBuilder::new();
    let web = builder.stream("web-orders", Utf8, Json::<Order>::new());
    let app = builder
        .stream("app-orders", Utf8, Json::<Order>::new())
        .map_values(|order: Order| Order {
            drink: order.drink.to_lowercase(),
            ..order
        })
        .name("normalize-app-order");
    web.merge(app)
        .name("all-orders")
        .select_key(|_, order: &Order| order.customer.clone())
        .repartition_with(
            Repartitioned::named("orders-by-customer").partitions(6),
            Utf8,
            Json::<Order>::new(),
        )
        .to("customer-orders", Utf8, Json::<Order>::new());
    builder.build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Golden comparisons
// ---------------------------------------------------------------------------------------------

#[test]
fn word_count_text_description_matches_golden() {
    assert_golden("word_count.txt", &word_count(false).describe().to_string());
}

#[test]
fn word_count_mermaid_matches_golden() {
    assert_golden("word_count.mmd", &word_count(false).describe().to_mermaid());
}

#[test]
fn alerting_text_description_matches_golden() {
    assert_golden("alerting.txt", &alerting().describe().to_string());
}

#[test]
fn alerting_mermaid_matches_golden() {
    assert_golden("alerting.mmd", &alerting().describe().to_mermaid());
}

#[test]
fn merged_orders_text_description_matches_golden() {
    assert_golden("merged_orders.txt", &merged_orders().describe().to_string());
}

#[test]
fn merged_orders_mermaid_matches_golden() {
    assert_golden(
        "merged_orders.mmd",
        &merged_orders().describe().to_mermaid(),
    );
}

// ---------------------------------------------------------------------------------------------
// Structure and stability
// ---------------------------------------------------------------------------------------------

#[test]
fn describing_the_same_pipeline_twice_gives_identical_descriptions() {
    for build in [|| word_count(false), alerting, merged_orders] {
        let (first, second) = (build().describe(), build().describe());
        assert_eq!(first, second);
        assert_eq!(first.to_string(), second.to_string());
        assert_eq!(first.to_mermaid(), second.to_mermaid());
    }
}

#[test]
fn repartition_splits_word_count_into_two_subtopologies_joined_by_the_internal_topic() {
    let description = word_count(false).describe();
    assert_eq!(description.subtopologies.len(), 2);
    let names = |sub: usize| -> Vec<&str> {
        description.subtopologies[sub]
            .nodes
            .iter()
            .map(|node| node.name.as_str())
            .collect()
    };
    assert_eq!(
        names(0),
        [
            "text-lines-source",
            "flat-map-1",
            "filter-1",
            "select-key-1",
            "words-repartition-sink"
        ]
    );
    assert_eq!(
        names(1),
        [
            "words-repartition-source",
            "map-values-1",
            "word-occurrences-sink"
        ]
    );
    let topic = "${application.id}-words-repartition";
    assert_eq!(description.internal_topics, [(topic.to_owned(), None)]);
    let sink = description.subtopologies[0].nodes.last().unwrap();
    let source = &description.subtopologies[1].nodes[0];
    assert_eq!((sink.role, source.role), ("Sink", "Source"));
    assert_eq!(sink.topics, [topic]);
    assert_eq!(source.topics, [topic]);
    assert!(sink.successors.is_empty() && source.predecessors.is_empty());
    assert_eq!(
        description.dead_letter_topic,
        "${application.id}-dead-letters"
    );
}

#[test]
fn adding_an_upstream_stateless_operator_does_not_rename_the_repartition_topic() {
    let (plain, extended) = (word_count(false).describe(), word_count(true).describe());
    assert_ne!(
        plain, extended,
        "the extra operator shows in the description"
    );
    assert_eq!(
        extended.subtopologies[0].nodes.len(),
        plain.subtopologies[0].nodes.len() + 1
    );
    assert_eq!(plain.internal_topics, extended.internal_topics);
    let repartition_nodes =
        |description: &engine::TopologyDescription| -> Vec<(String, Vec<String>)> {
            description
                .subtopologies
                .iter()
                .flat_map(|sub| &sub.nodes)
                .filter(|node| node.name.starts_with("words-repartition"))
                .map(|node| (node.name.clone(), node.topics.clone()))
                .collect()
        };
    assert_eq!(repartition_nodes(&plain).len(), 2);
    assert_eq!(repartition_nodes(&plain), repartition_nodes(&extended));

    // Both versions really write the same internal topic, so an upgrade keeps its data.
    for topology in [word_count(false), word_count(true)] {
        let mut driver = TestDriver::builder(topology)
            .partitions("text-lines", 3)
            .build()
            .unwrap();
        let input = driver.input_topic("text-lines", Utf8, Utf8);
        driver
            .pipe(&input, "l1".into(), " To be or not ".into())
            .unwrap();
        let internal = driver.output_topic("test-app-words-repartition", Utf8, Utf8);
        let words: Vec<String> = driver
            .read_key_values(&internal)
            .unwrap()
            .into_iter()
            .map(|(word, _)| word)
            .collect();
        assert_eq!(words, ["to", "be", "or", "not"]);
    }
}

#[test]
fn split_branches_are_named_split_dash_branch_and_hang_off_the_split_node() {
    let description = alerting().describe();
    assert_eq!(description.subtopologies.len(), 1);
    let nodes = &description.subtopologies[0].nodes;
    let split = nodes.iter().find(|node| node.name == "level").unwrap();
    assert_eq!(split.detail, "split");
    assert_eq!(split.predecessors, ["valid-readings"]);
    assert_eq!(
        split.successors,
        ["level-critical", "level-warning", "level-normal"]
    );
    for branch in ["level-critical", "level-warning", "level-normal"] {
        let node = nodes.iter().find(|node| node.name == branch).unwrap();
        assert_eq!(node.detail, "branch");
        assert_eq!(node.predecessors, ["level"]);
    }
}

#[test]
fn merge_node_lists_both_parents_and_repartition_count_shows_in_description() {
    let description = merged_orders().describe();
    let nodes = &description.subtopologies[0].nodes;
    let merge = nodes.iter().find(|node| node.name == "all-orders").unwrap();
    assert_eq!(merge.detail, "merge");
    assert_eq!(
        merge.predecessors,
        ["web-orders-source", "normalize-app-order"]
    );
    assert_eq!(
        description.internal_topics,
        [(
            "${application.id}-orders-by-customer-repartition".to_owned(),
            Some(6)
        )]
    );
}
