//! A topology drawn as a standalone SVG picture: the same graph as
//! [`TopologyDescription::to_mermaid`], laid out without a browser or a
//! diagram library, so a service can serve it as it is.
//!
//! Layout: nodes (operators, and topics as rounded pills) go in columns by
//! their longest distance from a topic nothing writes; within a column they
//! are ordered by the average row of their parents, which keeps most edges
//! short and uncrossed for the tree-like graphs stream topologies are.
//! Operators are tinted by sub-topology.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::describe::TopologyDescription;

const ROW: f64 = 56.0;
const NODE_HEIGHT: f64 = 40.0;
const COLUMN_GAP: f64 = 48.0;
const MARGIN: f64 = 16.0;
const CHAR_WIDTH: f64 = 6.6;
/// Sub-topology tints (cycled), light enough for dark text.
const TINTS: [&str; 6] = [
    "#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#e0e7ff", "#ccfbf1",
];

struct Shape {
    label: String,
    detail: Option<String>,
    /// `None` for topics.
    sub: Option<usize>,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl TopologyDescription {
    /// The topology as an SVG document: operators as boxes tinted by
    /// sub-topology, topics as pills, arrows in the direction records flow.
    ///
    /// ```
    /// use engine::StreamsBuilder;
    /// use engine::serdes::Utf8;
    ///
    /// let builder = StreamsBuilder::new();
    /// builder.stream("in", Utf8, Utf8).map_values(|v: String| v.to_uppercase()).to("out", Utf8, Utf8);
    /// let svg = builder.build()?.describe().to_svg();
    /// assert!(svg.starts_with("<svg"));
    /// assert!(svg.contains(">map-values-1<") && svg.contains(">out<"));
    /// # Ok::<(), engine::EngineError>(())
    /// ```
    pub fn to_svg(&self) -> String {
        // Nodes keyed "n:<name>" (operators) and "t:<topic>" (topics).
        let mut shapes: BTreeMap<String, Shape> = BTreeMap::new();
        let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
        let mut order: Vec<String> = Vec::new();
        let mut add = |key: String, shape: Shape, order: &mut Vec<String>| {
            if let std::collections::btree_map::Entry::Vacant(entry) = shapes.entry(key) {
                order.push(entry.key().clone());
                entry.insert(shape);
            }
        };
        for sub in &self.subtopologies {
            for node in &sub.nodes {
                let key = format!("n:{}", node.name);
                let detail = (node.role == "Processor").then(|| node.detail.clone());
                add(
                    key.clone(),
                    Shape {
                        label: node.name.clone(),
                        detail,
                        sub: Some(sub.id),
                    },
                    &mut order,
                );
                for successor in &node.successors {
                    edges.insert((key.clone(), format!("n:{successor}")));
                }
                for topic in &node.topics {
                    let topic_key = format!("t:{topic}");
                    add(
                        topic_key.clone(),
                        Shape {
                            label: topic.clone(),
                            detail: None,
                            sub: None,
                        },
                        &mut order,
                    );
                    if node.role == "Source" {
                        edges.insert((topic_key, key.clone()));
                    } else {
                        edges.insert((key.clone(), topic_key));
                    }
                }
            }
        }

        // Columns: longest path from a node without parents.
        let parents = |key: &str| -> Vec<&String> {
            edges
                .iter()
                .filter(|(_, to)| to == key)
                .map(|(from, _)| from)
                .collect()
        };
        let mut column: BTreeMap<&str, usize> = BTreeMap::new();
        // Relax in rounds; a DAG settles within `nodes` rounds.
        for _ in 0..=order.len() {
            let mut changed = false;
            for key in &order {
                let depth = parents(key)
                    .iter()
                    .filter_map(|p| column.get(p.as_str()).map(|d| d + 1))
                    .max()
                    .unwrap_or(0);
                if column.get(key.as_str()) != Some(&depth) {
                    column.insert(key, depth);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let columns = column.values().copied().max().map_or(0, |m| m + 1);
        let mut rows: Vec<Vec<&str>> = vec![Vec::new(); columns];
        for key in &order {
            rows[column[key.as_str()]].push(key);
        }
        // Order each column by the mean row of its parents.
        let mut row_of: BTreeMap<&str, f64> = BTreeMap::new();
        for keys in &mut rows {
            let mut ranked: Vec<(f64, usize, &str)> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let placed: Vec<f64> = parents(key)
                        .iter()
                        .filter_map(|p| row_of.get(p.as_str()).copied())
                        .collect();
                    let rank = if placed.is_empty() {
                        i as f64
                    } else {
                        placed.iter().sum::<f64>() / placed.len() as f64
                    };
                    (rank, i, *key)
                })
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *keys = ranked.iter().map(|(_, _, key)| *key).collect();
            for (i, key) in keys.iter().enumerate() {
                row_of.insert(key, i as f64);
            }
        }

        let width_of = |shape: &Shape| {
            let longest = shape
                .label
                .chars()
                .count()
                .max(shape.detail.as_ref().map_or(0, |d| d.chars().count()));
            (longest as f64 * CHAR_WIDTH + 24.0).max(90.0)
        };
        let column_width: Vec<f64> = rows
            .iter()
            .map(|keys| {
                keys.iter()
                    .map(|key| width_of(&shapes[*key]))
                    .fold(0.0, f64::max)
            })
            .collect();
        let mut x = Vec::with_capacity(columns);
        let mut next = MARGIN;
        for width in &column_width {
            x.push(next);
            next += width + COLUMN_GAP;
        }
        let total_width = next - COLUMN_GAP + MARGIN;
        let tallest = rows.iter().map(Vec::len).max().unwrap_or(0);
        let legend = 28.0;
        let total_height = MARGIN * 2.0 + tallest as f64 * ROW + legend;
        let mut position: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
        for (c, keys) in rows.iter().enumerate() {
            // Centre short columns vertically.
            let offset = (tallest - keys.len()) as f64 * ROW / 2.0;
            for (r, key) in keys.iter().enumerate() {
                let shape = &shapes[*key];
                let w = width_of(shape);
                let left = x[c] + (column_width[c] - w) / 2.0;
                position.insert(key, (left, MARGIN + offset + r as f64 * ROW, w));
            }
        }

        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {total_width:.0} \
             {total_height:.0}\" width=\"{total_width:.0}\" height=\"{total_height:.0}\" \
             role=\"img\" aria-labelledby=\"topology-title\" font-family=\"system-ui, \
             sans-serif\" font-size=\"12\">\n<title id=\"topology-title\">Topology: {} \
             sub-topologies, {} operators</title>\n<defs><marker id=\"arrow\" \
             viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
             markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 \
             z\" fill=\"#475569\"/></marker></defs>\n",
            self.subtopologies.len(),
            shapes.values().filter(|s| s.sub.is_some()).count()
        );
        for (from, to) in &edges {
            let (Some(a), Some(b)) = (position.get(from.as_str()), position.get(to.as_str()))
            else {
                continue;
            };
            let (x1, y1) = (a.0 + a.2, a.1 + NODE_HEIGHT / 2.0);
            let (x2, y2) = (b.0, b.1 + NODE_HEIGHT / 2.0);
            let bend = ((x2 - x1) / 2.0).max(16.0);
            let _ = writeln!(
                svg,
                "<path d=\"M {x1:.1} {y1:.1} C {:.1} {y1:.1}, {:.1} {y2:.1}, {x2:.1} {y2:.1}\" \
                 fill=\"none\" stroke=\"#475569\" stroke-width=\"1.2\" \
                 marker-end=\"url(#arrow)\"/>",
                x1 + bend,
                x2 - bend
            );
        }
        for key in &order {
            let shape = &shapes[key];
            let (left, top, w) = position[key.as_str()];
            let (fill, radius, stroke) = match shape.sub {
                Some(sub) => (TINTS[sub % TINTS.len()], 6.0, "#334155"),
                None => ("#ffffff", NODE_HEIGHT / 2.0, "#0f172a"),
            };
            let _ = writeln!(
                svg,
                "<g><rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{NODE_HEIGHT}\" \
                 rx=\"{radius:.1}\" fill=\"{fill}\" stroke=\"{stroke}\"/>"
            );
            let centre = left + w / 2.0;
            match &shape.detail {
                Some(detail) => {
                    let _ = writeln!(
                        svg,
                        "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                         fill=\"#0f172a\">{}</text><text x=\"{centre:.1}\" y=\"{:.1}\" \
                         text-anchor=\"middle\" fill=\"#334155\" font-style=\"italic\" \
                         font-size=\"11\">{}</text></g>",
                        top + 17.0,
                        escape(&shape.label),
                        top + 31.0,
                        escape(detail)
                    );
                }
                None => {
                    let _ = writeln!(
                        svg,
                        "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                         fill=\"#0f172a\">{}</text></g>",
                        top + 24.0,
                        escape(&shape.label)
                    );
                }
            }
        }
        // Legend: one swatch per sub-topology, and the topic shape.
        let mut lx = MARGIN;
        let ly = total_height - MARGIN - 14.0;
        for sub in &self.subtopologies {
            let _ = writeln!(
                svg,
                "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"14\" height=\"14\" rx=\"3\" \
                 fill=\"{}\" stroke=\"#334155\"/><text x=\"{:.1}\" y=\"{:.1}\" \
                 fill=\"#0f172a\">Sub-topology {}</text>",
                TINTS[sub.id % TINTS.len()],
                lx + 20.0,
                ly + 11.0,
                sub.id
            );
            lx += 120.0;
        }
        let _ = writeln!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"28\" height=\"14\" rx=\"7\" \
             fill=\"#ffffff\" stroke=\"#0f172a\"/><text x=\"{:.1}\" y=\"{:.1}\" \
             fill=\"#0f172a\">topic</text>",
            lx + 34.0,
            ly + 11.0
        );
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use crate::StreamsBuilder;
    use crate::serdes::Utf8;

    #[test]
    fn every_node_and_topic_is_drawn_once_and_text_is_escaped() {
        let builder = StreamsBuilder::new();
        let words = builder.stream("words", Utf8, Utf8);
        words
            .clone()
            .filter(|_, v: &String| !v.is_empty())
            .name("a<b")
            .to("left", Utf8, Utf8);
        words
            .map_values(|v: String| v.len().to_string())
            .to("right", Utf8, Utf8);
        let description = builder.build().unwrap().describe();
        let svg = description.to_svg();
        assert!(svg.contains(">a&lt;b<"), "{svg}");
        assert!(!svg.contains("a<b"));
        for name in ["a&lt;b", "map-values-1", "words", "left", "right"] {
            assert_eq!(svg.matches(&format!(">{name}<")).count(), 1, "{name}");
        }
        // Two sinks, two processors, one source: five edges into them, and
        // two into the output topics.
        assert_eq!(svg.matches("marker-end").count(), 7);
    }
}
