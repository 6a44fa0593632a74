//! A computational graph drawn as SVG without Graphviz: nodes in layers by
//! depth (inputs on the left), edges as straight lines.

use chainrule::graph::Graph;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG of `g`.
pub fn render(g: &Graph) -> String {
    let names = g.op_names();
    let inputs = g.node_inputs();
    let shapes = g.node_shapes();
    let outputs = g.output_ids();
    let n = names.len();
    let mut depth = vec![0usize; n];
    for (i, ins) in inputs.iter().enumerate() {
        depth[i] = ins.iter().map(|&j| depth[j] + 1).max().unwrap_or(0);
    }
    let layers = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut row_in_layer = vec![0usize; n];
    let mut count = vec![0usize; layers.max(1)];
    for i in 0..n {
        row_in_layer[i] = count[depth[i]];
        count[depth[i]] += 1;
    }
    let (w, h, gap_x, gap_y) = (170.0, 44.0, 60.0, 22.0);
    let pos = |i: usize| {
        (
            20.0 + depth[i] as f64 * (w + gap_x),
            20.0 + row_in_layer[i] as f64 * (h + gap_y),
        )
    };
    let width = 40.0 + layers as f64 * (w + gap_x);
    let height = 40.0 + count.iter().copied().max().unwrap_or(1) as f64 * (h + gap_y);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n"
    );
    for (i, ins) in inputs.iter().enumerate() {
        for &j in ins {
            let (x1, y1) = pos(j);
            let (x2, y2) = pos(i);
            s.push_str(&format!(
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#555\" marker-end=\"url(#arrow)\"/>\n",
                x1 + w,
                y1 + h / 2.0,
                x2,
                y2 + h / 2.0
            ));
        }
    }
    for i in 0..n {
        let (x, y) = pos(i);
        let fill = if names[i].starts_with("input") {
            "#d0e4ff"
        } else if names[i].starts_with("constant") {
            "#eeeeee"
        } else {
            "#ffffff"
        };
        let stroke = if outputs.contains(&i) { 3 } else { 1 };
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"6\" fill=\"{fill}\" stroke=\"#222\" stroke-width=\"{stroke}\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">%{i} {}</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{:?}</text>\n",
            x + w / 2.0,
            y + 18.0,
            escape(&names[i]),
            x + w / 2.0,
            y + 34.0,
            shapes[i]
        ));
    }
    s.push_str("</svg>\n");
    s
}
