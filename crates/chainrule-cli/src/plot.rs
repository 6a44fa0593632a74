//! PNG plots of training curves (plotters, with a font shipped in the binary
//! so that no system font is needed).

use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/plot-font.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are the shipped font, checked by the plot test.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One curve: a name and a value per epoch (epoch 1 first).
pub struct Series<'a> {
    /// The name in the legend.
    pub name: &'a str,
    /// One value per epoch (or per x of the panel's `xs`).
    pub values: &'a [f64],
}

/// One panel: a title, axis labels and its curves. Without `xs`, the x
/// axis counts epochs (1, 2, …); with it, every series is drawn at those x.
pub struct Panel<'a> {
    /// The panel's title.
    pub title: &'a str,
    /// The x axis label.
    pub x_label: &'a str,
    /// The y axis label.
    pub y_label: &'a str,
    /// The x of each value, shared by every series (epochs if `None`).
    pub xs: Option<&'a [f64]>,
    /// The curves.
    pub series: Vec<Series<'a>>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Draws the panels side by side into a PNG at `path`. It is written to a
/// temporary name and renamed into place: never a partial file.
pub fn write_png(path: &Path, panels: &[Panel]) -> Result<(), String> {
    register_font();
    chainrule::files::replace_file(path, |tmp| draw(tmp, panels).map_err(std::io::Error::other))
        .map_err(|e| format!("cannot write the plot: {e}"))
}

fn draw(path: &Path, panels: &[Panel]) -> Result<(), String> {
    let width = 480 * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(&areas) {
        let epochs = panel
            .series
            .iter()
            .map(|s| s.values.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let x_of = |e: usize| panel.xs.map_or((e + 1) as f64, |xs| xs[e]);
        let (x_lo, x_hi) = match panel.xs {
            Some(xs) => (
                xs.iter().copied().fold(f64::INFINITY, f64::min),
                xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ),
            None => (1.0, (epochs as f64).max(2.0)),
        };
        let finite = panel
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let pad = ((hi - lo) * 0.05).max(1e-9);
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x_lo..x_hi, (lo - pad)..(hi + pad))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(panel.x_label)
            .y_desc(panel.y_label)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in panel.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    s.values.iter().enumerate().map(|(e, &v)| (x_of(e), v)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(s.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
