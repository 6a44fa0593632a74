//! A computational graph drawn as SVG, without Graphviz.
//!
//! A layered (Sugiyama-style) drawing, top to bottom: every node on the
//! layer of its longest path from the inputs (an input or a constant just
//! above its first consumer); an edge that spans several layers passes
//! through a waypoint on each layer between, which takes a slot in that
//! layer's order like a node, so edges run between nodes instead of across
//! them; the order within each layer is improved by barycentre sweeps, and
//! each node is then drawn near the middle of its neighbours. The picture is
//! as wide as its widest layer. Forward and gradient nodes and edges are
//! styled differently, and a legend says how.

use chainrule::graph::Graph;
use chainrule::Tensor;
use std::fmt::Write;

/// What to draw besides the graph's structure.
pub struct Options {
    /// The outputs (the first ones) that are the forward computation; the
    /// nodes none of them depends on are the gradient's. `num_outputs`
    /// for a graph without gradients.
    pub forward_outputs: usize,
    /// Each node's value, shown under its shape (`None`: not shown).
    pub values: Option<Vec<Tensor>>,
}

const NODE_HEIGHT: f64 = 54.0;
const LAYER_GAP: f64 = 46.0;
const NODE_GAP: f64 = 18.0;
const WAYPOINT_WIDTH: f64 = 8.0;
const MARGIN: f64 = 20.0;
const LEGEND_HEIGHT: f64 = 40.0;
const CHAR_WIDTH: f64 = 6.6;

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Input,
    Constant,
    Forward,
    Gradient,
}

/// One slot of a layer: a node of the graph, or a waypoint of a long edge.
#[derive(Clone, Copy)]
struct Slot {
    node: Option<usize>,
    width: f64,
    x: f64,
}

/// The SVG of `g`.
pub fn render(g: &Graph, options: &Options) -> String {
    let labels = labels(g, options.values.as_deref());
    let roles = roles(g, options.forward_outputs);
    let inputs = g.node_inputs();
    let layer = layers(&inputs, &roles);
    let (mut slots, mut paths) = place_waypoints(&inputs, &layer, &labels);
    order_layers(&mut slots, &mut paths);
    let width = position(&mut slots, &paths);
    draw(g, &slots, &paths, &labels, &roles, width)
}

/// Each node's text lines: `%id op`, its shape, and its value if given.
fn labels(g: &Graph, values: Option<&[Tensor]>) -> Vec<Vec<String>> {
    let names = g.op_names();
    let shapes = g.node_shapes();
    (0..names.len())
        .map(|i| {
            let mut lines = vec![format!("%{i} {}", names[i]), format!("{:?}", shapes[i])];
            if let Some(v) = values.and_then(|v| v.get(i)) {
                lines.push(crate::explain::abbreviate_to(v, 4, 4));
            }
            lines
        })
        .collect()
}

/// Inputs and constants by their op's name; a node that no forward output
/// depends on is the gradient's.
fn roles(g: &Graph, forward_outputs: usize) -> Vec<Role> {
    let names = g.op_names();
    let inputs = g.node_inputs();
    let mut forward = vec![false; names.len()];
    let mut stack: Vec<usize> = g.output_ids().into_iter().take(forward_outputs).collect();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut forward[i], true) {
            stack.extend(&inputs[i]);
        }
    }
    names
        .iter()
        .zip(forward)
        .map(|(name, fwd)| match name {
            n if n.starts_with("input") => Role::Input,
            n if n.starts_with("constant") => Role::Constant,
            _ if fwd => Role::Forward,
            _ => Role::Gradient,
        })
        .collect()
}

/// Each node's layer: its longest path from a source; a source (input or
/// constant) one layer above its first consumer.
fn layers(inputs: &[Vec<usize>], roles: &[Role]) -> Vec<usize> {
    let is_source = |i: usize| matches!(roles[i], Role::Input | Role::Constant);
    let mut layer = vec![0usize; inputs.len()];
    for (i, ins) in inputs.iter().enumerate() {
        layer[i] = ins.iter().map(|&j| layer[j] + 1).max().unwrap_or(0);
    }
    let mut first_use = vec![usize::MAX; inputs.len()];
    for (i, ins) in inputs.iter().enumerate() {
        for &j in ins {
            first_use[j] = first_use[j].min(layer[i]);
        }
    }
    for i in 0..inputs.len() {
        if is_source(i) && first_use[i] != usize::MAX {
            layer[i] = first_use[i].saturating_sub(1);
        }
    }
    layer
}

/// An edge's route: (layer, slot index) from its source to its target.
type Path = Vec<(usize, usize)>;

/// The layers' slots (nodes, then a waypoint per layer an edge crosses)
/// and each edge's route through them.
fn place_waypoints(
    inputs: &[Vec<usize>],
    layer: &[usize],
    labels: &[Vec<String>],
) -> (Vec<Vec<Slot>>, Vec<Path>) {
    let depth = layer.iter().copied().max().map_or(1, |d| d + 1);
    let mut slots: Vec<Vec<Slot>> = vec![Vec::new(); depth];
    let mut index = vec![0usize; inputs.len()];
    for (i, lines) in labels.iter().enumerate() {
        let chars = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        index[i] = slots[layer[i]].len();
        slots[layer[i]].push(Slot {
            node: Some(i),
            width: (chars as f64 * CHAR_WIDTH + 16.0).max(60.0),
            x: 0.0,
        });
    }
    let mut paths = Vec::new();
    for (i, ins) in inputs.iter().enumerate() {
        for &j in ins {
            let mut path = vec![(layer[j], index[j])];
            let between = layer[j] + 1..layer[i];
            for (row, l) in slots[between.clone()].iter_mut().zip(between) {
                path.push((l, row.len()));
                row.push(Slot {
                    node: None,
                    width: WAYPOINT_WIDTH,
                    x: 0.0,
                });
            }
            path.push((layer[i], index[i]));
            paths.push(path);
        }
    }
    (slots, paths)
}

/// Reorders each layer by the mean position of its slots' neighbours in the
/// layer above, then below (a few sweeps), to uncross edges.
fn order_layers(slots: &mut [Vec<Slot>], paths: &mut [Path]) {
    for sweep in 0..4 {
        let down = sweep % 2 == 0;
        let layers: Vec<usize> = if down {
            (1..slots.len()).collect()
        } else {
            (0..slots.len().saturating_sub(1)).rev().collect()
        };
        for l in layers {
            let neighbour = if down { l - 1 } else { l + 1 };
            let mut sum = vec![(0.0, 0usize); slots[l].len()];
            for path in paths.iter() {
                for w in path.windows(2) {
                    let (a, b) = if down { (w[0], w[1]) } else { (w[1], w[0]) };
                    if b.0 == l && a.0 == neighbour {
                        sum[b.1].0 += a.1 as f64;
                        sum[b.1].1 += 1;
                    }
                }
            }
            let key = |k: usize| match sum[k] {
                (_, 0) => k as f64,
                (s, n) => s / n as f64,
            };
            let mut order: Vec<usize> = (0..slots[l].len()).collect();
            order.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
            let mut new_index = vec![0; order.len()];
            for (new, &old) in order.iter().enumerate() {
                new_index[old] = new;
            }
            slots[l] = order.iter().map(|&k| slots[l][k]).collect();
            for path in paths.iter_mut() {
                for step in path.iter_mut().filter(|s| s.0 == l) {
                    step.1 = new_index[step.1];
                }
            }
        }
    }
}

/// Gives every slot its x (left edge): layer by layer, each near the mean
/// centre of its neighbours above, in order and without overlap. Returns
/// the picture's width.
fn position(slots: &mut [Vec<Slot>], paths: &[Path]) -> f64 {
    let packed = |layer: &[Slot]| layer.iter().map(|s| s.width + NODE_GAP).sum::<f64>();
    let widest = slots.iter().map(|l| packed(l)).fold(0.0, f64::max);
    for l in 0..slots.len() {
        let mut wanted: Vec<Vec<f64>> = vec![Vec::new(); slots[l].len()];
        for path in paths {
            for w in path.windows(2).filter(|w| w[1].0 == l && l > 0) {
                let s = slots[w[0].0][w[0].1];
                wanted[w[1].1].push(s.x + s.width / 2.0);
            }
        }
        // Without neighbours above, a layer is centred in the widest one.
        let mut next = MARGIN + (widest - packed(&slots[l])) / 2.0;
        for (k, slot) in slots[l].iter_mut().enumerate() {
            let centre = match wanted[k].len() {
                0 => next + slot.width / 2.0,
                n => wanted[k].iter().sum::<f64>() / n as f64,
            };
            slot.x = (centre - slot.width / 2.0).max(next);
            next = slot.x + slot.width + NODE_GAP;
        }
        // Pushed right past the widest layer: pulled back, keeping the order.
        let mut limit = MARGIN + widest;
        for slot in slots[l].iter_mut().rev() {
            slot.x = slot.x.min(limit - NODE_GAP - slot.width);
            limit = slot.x;
        }
    }
    let right = slots
        .iter()
        .flatten()
        .map(|s| s.x + s.width)
        .fold(0.0, f64::max);
    right + MARGIN
}

fn layer_top(l: usize) -> f64 {
    MARGIN + LEGEND_HEIGHT + l as f64 * (NODE_HEIGHT + LAYER_GAP)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How each role is drawn: fill, stroke, dash pattern, legend caption.
fn style(role: Role) -> (&'static str, &'static str, &'static str, &'static str) {
    match role {
        Role::Input => ("#d0e4ff", "#1f4e8c", "", "input"),
        Role::Constant => ("#f2f2f2", "#666666", "4 3", "constant"),
        Role::Forward => ("#ffffff", "#222222", "", "forward op"),
        Role::Gradient => ("#fff0dc", "#c0600a", "", "gradient op (backward pass)"),
    }
}

fn draw(
    g: &Graph,
    slots: &[Vec<Slot>],
    paths: &[Path],
    labels: &[Vec<String>],
    roles: &[Role],
    width: f64,
) -> String {
    let height = layer_top(slots.len()) - LAYER_GAP + MARGIN;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <defs>\n\
         <marker id=\"fwd\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker>\n\
         <marker id=\"grad\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c0600a\"/></marker>\n\
         </defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    legend(&mut s);
    let outputs = g.output_ids();
    for path in paths {
        edge(&mut s, slots, path, roles);
    }
    for (l, layer) in slots.iter().enumerate() {
        for slot in layer {
            let Some(i) = slot.node else { continue };
            let (fill, stroke, dash, _) = style(roles[i]);
            let y = layer_top(l);
            let border = if outputs.contains(&i) { 3 } else { 1 };
            writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{NODE_HEIGHT}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{border}\" stroke-dasharray=\"{dash}\"/>",
                slot.x, slot.width
            )
            .unwrap();
            for (k, line) in labels[i].iter().enumerate() {
                let colour = if k == 0 { "#000" } else { "#555" };
                writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>",
                    slot.x + slot.width / 2.0,
                    y + 16.0 + 14.0 * k as f64,
                    escape(line)
                )
                .unwrap();
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The legend: one sample box per role, and what a thick border means.
fn legend(s: &mut String) {
    let mut x = MARGIN;
    for role in [Role::Input, Role::Constant, Role::Forward, Role::Gradient] {
        let (fill, stroke, dash, caption) = style(role);
        writeln!(
            s,
            "<rect x=\"{x}\" y=\"{MARGIN}\" width=\"18\" height=\"14\" rx=\"3\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-dasharray=\"{dash}\"/>\
             <text x=\"{}\" y=\"{}\">{caption}</text>",
            x + 24.0,
            MARGIN + 11.0
        )
        .unwrap();
        x += 34.0 + caption.len() as f64 * CHAR_WIDTH;
    }
    writeln!(
        s,
        "<rect x=\"{x}\" y=\"{MARGIN}\" width=\"18\" height=\"14\" rx=\"3\" fill=\"white\" stroke=\"#222\" stroke-width=\"3\"/>\
         <text x=\"{}\" y=\"{}\">output</text>",
        x + 24.0,
        MARGIN + 11.0
    )
    .unwrap();
}

/// One edge: from the bottom of its source, down through its waypoints
/// (straight through each waypoint's layer), into the top of its target,
/// as curves between layers.
fn edge(s: &mut String, slots: &[Vec<Slot>], path: &Path, roles: &[Role]) {
    let centre = |(l, k): (usize, usize)| slots[l][k].x + slots[l][k].width / 2.0;
    let target = slots[path[path.len() - 1].0][path[path.len() - 1].1]
        .node
        .expect("an edge ends at a node");
    let gradient = roles[target] == Role::Gradient;
    let (first, last) = (path[0], path[path.len() - 1]);
    let mut d = format!(
        "M{:.1},{:.1}",
        centre(first),
        layer_top(first.0) + NODE_HEIGHT
    );
    let mut y = layer_top(first.0) + NODE_HEIGHT;
    for (n, &step) in path.iter().enumerate().skip(1) {
        let (x, top) = (centre(step), layer_top(step.0));
        let (x0, mid) = (centre(path[n - 1]), (y + top) / 2.0);
        write!(d, " C{x0:.1},{mid:.1} {x:.1},{mid:.1} {x:.1},{top:.1}").unwrap();
        y = top;
        if step != last {
            y = top + NODE_HEIGHT;
            write!(d, " L{x:.1},{y:.1}").unwrap();
        }
    }
    let (colour, marker, dash) = if gradient {
        ("#c0600a", "grad", "5 3")
    } else {
        ("#555", "fwd", "")
    };
    writeln!(
        s,
        "<path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-dasharray=\"{dash}\" marker-end=\"url(#{marker})\"/>"
    )
    .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainrule::{DType, Tensor};

    /// The gradient graph of a 3-class cross-entropy, as `--svg` draws it.
    fn cross_entropy_graph() -> Graph {
        let x = Tensor::rand_normal(&[3], 0.0, 1.0, 0, DType::F64);
        let y = Tensor::from_vec(vec![0.0f64, 1.0, 0.0], &[3]);
        Graph::trace(&[("x", &x), ("y", &y)], |v| {
            Ok(vec![(-&v[1] * v[0].log_softmax(0)).sum()])
        })
        .and_then(|g| g.gradients(0, &["x"]))
        .unwrap()
        .optimize()
    }

    #[test]
    fn nodes_never_overlap_and_edges_go_down_one_layer_at_a_time() {
        let g = cross_entropy_graph();
        let labels = labels(&g, Some(&g.example_values().unwrap()));
        let roles = roles(&g, 1);
        let layer = layers(&g.node_inputs(), &roles);
        let (mut slots, mut paths) = place_waypoints(&g.node_inputs(), &layer, &labels);
        order_layers(&mut slots, &mut paths);
        let width = position(&mut slots, &paths);
        for row in &slots {
            for pair in row.windows(2) {
                assert!(pair[0].x + pair[0].width + NODE_GAP <= pair[1].x + 1e-9);
            }
        }
        for path in &paths {
            assert!(path.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{path:?}");
        }
        // As wide as the widest layer (with its gaps and margins), not as long as the graph.
        let widest = slots
            .iter()
            .map(|row| row.iter().map(|s| s.width + NODE_GAP).sum::<f64>())
            .fold(0.0, f64::max);
        assert!(width <= widest + 2.0 * MARGIN, "{width} vs {widest}");
        assert!(slots.iter().flatten().all(|s| s.x >= MARGIN - 1e-9));
    }

    #[test]
    fn gradient_nodes_are_told_apart_from_forward_ones() {
        let g = cross_entropy_graph();
        let roles = roles(&g, 1);
        let outputs = g.output_ids();
        assert!(roles[outputs[0]] == Role::Forward);
        assert!(roles[outputs[1]] == Role::Gradient);
        let svg = render(
            &g,
            &Options {
                forward_outputs: 1,
                values: None,
            },
        );
        assert!(svg.contains("gradient op (backward pass)") && svg.contains("url(#grad)"));
        assert!(svg.contains("#fff0dc") && svg.contains("url(#fwd)"));
    }
}
