//! Line charts as PNG files, with a title, axis labels, tick labels and a legend, drawn by
//! `plotters` with a font compiled into the binary: DejaVu Sans from the `dejavu` crate
//! (Bitstream Vera licence with public-domain DejaVu changes; the crate itself is
//! MIT/Apache-2.0), rendered by `ab_glyph`. No system font is looked up, so a chart reads the
//! same on every machine, a bare container included.
//!
//! One function, [`draw_line_chart`], draws every chart of the project (the report's ASR,
//! utility, reward gap, collinearity and training curves, and `align eval consistency
//! --plot`) from a [`LineChart`]: x is either named categories (languages) or numbers (layers,
//! steps); each [`Series`] is one line in a colour of [`PALETTE`], solid or dashed; the legend
//! sits to the right of the plot so it never hides a line.

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::{Result, TrainError};

/// The font family name the charts' text uses (registered with plotters on first use).
pub const FONT_FAMILY: &str = "sans-serif";

/// Line colours, in the order series get them: the ten "tab10" colours (blue, orange, green,
/// red, purple, brown, pink, grey, olive, cyan).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of reference lines ([`Reference`]): grey.
pub const REFERENCE_COLOUR: RGBColor = RGBColor(150, 150, 150);

/// The colour of the `i`-th series ([`PALETTE`], repeating).
pub fn palette_colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Registers the embedded font with plotters (once per process).
fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // The font is valid (a fixed file of the dejavu crate); a failure would show as an
        // error from the first text drawn.
        let _ = plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT_FAMILY, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// What the x axis shows.
#[derive(Debug, Clone, PartialEq)]
pub enum XAxis {
    /// Named positions 0, 1, 2, ... (e.g. languages); points use the index as x.
    Categories(Vec<String>),
    /// A numeric axis from `min` to `max`; tick labels are integers when `integers`.
    Numeric {
        /// Left end.
        min: f64,
        /// Right end.
        max: f64,
        /// Label ticks as integers (layers, steps).
        integers: bool,
    },
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend entry.
    pub name: String,
    /// Its colour.
    pub colour: RGBColor,
    /// `(x, y)` points in order; non-finite values are left out.
    pub points: Vec<(f64, f64)>,
    /// Dashed instead of solid.
    pub dashed: bool,
    /// Draw a dot at each point (for few points).
    pub markers: bool,
}

/// A horizontal reference line (e.g. the orthogonal floor, or zero).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Its legend entry.
    pub name: String,
    /// Its height.
    pub y: f64,
}

/// A chart: title, axis labels, axes and lines.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// The title above the plot.
    pub title: String,
    /// The x axis label.
    pub x_label: String,
    /// The y axis label.
    pub y_label: String,
    /// The x axis.
    pub x: XAxis,
    /// The y range; `None`: the data's range with a margin.
    pub y_range: Option<(f64, f64)>,
    /// The lines, drawn in order.
    pub series: Vec<Series>,
    /// Horizontal reference lines (grey dashes).
    pub references: Vec<Reference>,
}

/// The y range that shows every finite value of the chart with a 5% margin.
fn data_y_range(chart: &LineChart) -> (f64, f64) {
    let ys = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain(chart.references.iter().map(|r| r.y));
    let (lo, hi) =
        ys.filter(|y| y.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

/// The x range of the axis.
fn x_range(x: &XAxis) -> (f64, f64) {
    match x {
        XAxis::Categories(names) => (-0.4, names.len().max(1) as f64 - 0.6),
        XAxis::Numeric { min, max, .. } if max > min => (*min, *max),
        XAxis::Numeric { min, .. } => (*min - 0.5, *min + 0.5),
    }
}

/// Width of the legend column, from its longest entry.
fn legend_width(chart: &LineChart) -> u32 {
    let longest = chart
        .series
        .iter()
        .map(|s| s.name.chars().count())
        .chain(chart.references.iter().map(|r| r.name.chars().count()))
        .max()
        .unwrap_or(0);
    (56 + 8 * longest as u32).clamp(120, 320)
}

/// Draws `chart` into a PNG of `width` x `height` pixels at `path` (at least 320 x 200),
/// written atomically.
pub fn draw_line_chart(chart: &LineChart, path: &Path, width: u32, height: u32) -> Result<()> {
    let plot_error = |e: &dyn std::fmt::Display| TrainError::Plot { path: path.to_path_buf(), why: e.to_string() };
    if width < 320 || height < 200 {
        return Err(plot_error(&"the image must be at least 320 x 200 pixels"));
    }
    register_fonts();
    let mut pixels = vec![0u8; width as usize * height as usize * 3]; // RGB
    draw_into(chart, &mut pixels, width, height).map_err(|e| plot_error(&e))?;
    let mut png = vec![];
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, width, height, image::ColorType::Rgb8)
        .map_err(|e| plot_error(&e))?;
    lm_backend::atomic::write_file(path, &png)?;
    Ok(())
}

/// Draws `chart` into an RGB pixel buffer of `width` x `height`; errors as text.
fn draw_into(chart: &LineChart, pixels: &mut [u8], width: u32, height: u32) -> std::result::Result<(), String> {
    let plot_error = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::with_buffer(pixels, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(&e))?;
    let (plot_area, legend_area) = root.split_horizontally(width - legend_width(chart));
    let (x0, x1) = x_range(&chart.x);
    let (y0, y1) = chart.y_range.unwrap_or_else(|| data_y_range(chart));
    let mut plot = ChartBuilder::on(&plot_area)
        .caption(&chart.title, (FONT_FAMILY, 20).into_font().style(FontStyle::Bold))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| plot_error(&e))?;
    let categories = match &chart.x {
        XAxis::Categories(names) => {
            // About 8 pixels a character at 14 px; the plot spans what the legend and the
            // y labels leave.
            let plot_width = (width - legend_width(chart)).saturating_sub(100) as usize;
            let fit = (plot_width / names.len().max(1) / 8).max(4);
            Some(names.iter().map(|n| shorten_from_left(n, fit)).collect::<Vec<_>>())
        }
        XAxis::Numeric { .. } => None,
    };
    let integers = matches!(chart.x, XAxis::Numeric { integers: true, .. });
    let x_format = |x: &f64| -> String {
        match &categories {
            Some(names) if (x - x.round()).abs() < 1e-6 && x.round() >= 0.0 => {
                names.get(x.round() as usize).cloned().unwrap_or_default()
            }
            Some(_) => String::new(),
            None if integers && (x - x.round()).abs() < 1e-6 => format!("{}", x.round() as i64),
            None if integers => String::new(),
            None => format!("{x}"),
        }
    };
    let y_format = |y: &f64| format!("{y:.2}");
    let x_ticks = categories.as_ref().map_or(10, |n| n.len().max(1));
    plot.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_labels(x_ticks)
        .y_labels(8)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 16))
        .light_line_style(RGBColor(247, 247, 247))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(|e| plot_error(&e))?;
    let grey = REFERENCE_COLOUR;
    for r in &chart.references {
        let line = vec![(x0, r.y), (x1, r.y)];
        plot.draw_series(DashedLineSeries::new(line, 8, 6, grey.stroke_width(2))).map_err(|e| plot_error(&e))?;
    }
    for s in &chart.series {
        let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
        let style = s.colour.stroke_width(3);
        if s.dashed {
            plot.draw_series(DashedLineSeries::new(points.clone(), 10, 6, style)).map_err(|e| plot_error(&e))?;
        } else {
            plot.draw_series(LineSeries::new(points.clone(), style)).map_err(|e| plot_error(&e))?;
        }
        if s.markers || points.len() == 1 {
            plot.draw_series(points.into_iter().map(|p| Circle::new(p, 4, s.colour.filled())))
                .map_err(|e| plot_error(&e))?;
        }
    }
    draw_legend(chart, &legend_area).map_err(|e| plot_error(&e))?;
    root.present().map_err(|e| plot_error(&e))?;
    Ok(())
}

/// `name` cut to its last `chars - 1` characters after an ellipsis when longer than `chars`
/// (tick labels of long run paths keep their distinctive end).
fn shorten_from_left(name: &str, chars: usize) -> String {
    let n = name.chars().count();
    if n <= chars {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n + 1 - chars).collect();
    format!("…{tail}")
}

/// The legend: one sample line and name per series, then the reference lines.
fn draw_legend<DB: DrawingBackend>(
    chart: &LineChart,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = (FONT_FAMILY, 14).into_font();
    let mut y = 52;
    let grey = REFERENCE_COLOUR;
    let entries = chart
        .series
        .iter()
        .map(|s| (s.name.as_str(), s.colour, s.dashed))
        .chain(chart.references.iter().map(|r| (r.name.as_str(), grey, true)));
    for (name, colour, dashed) in entries {
        let style = colour.stroke_width(3);
        if dashed {
            area.draw(&PathElement::new(vec![(4, y), (12, y)], style))?;
            area.draw(&PathElement::new(vec![(18, y), (26, y)], style))?;
            area.draw(&PathElement::new(vec![(32, y), (36, y)], style))?;
        } else {
            area.draw(&PathElement::new(vec![(4, y), (36, y)], style))?;
        }
        area.draw(&Text::new(name.to_string(), (44, y - 8), font.clone()))?;
        y += 24;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>) -> LineChart {
        LineChart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x: XAxis::Categories(vec!["en".into(), "sw".into()]),
            y_range: None,
            series,
            references: vec![Reference { name: "zero".into(), y: 0.0 }],
        }
    }

    #[test]
    fn long_tick_labels_keep_their_end() {
        assert_eq!(shorten_from_left("runs/demo/mpo_mlc", 8), "…mpo_mlc");
        assert_eq!(shorten_from_left("dpo", 8), "dpo");
        assert_eq!(shorten_from_left("ab", 2), "ab");
    }

    #[test]
    fn the_data_range_covers_every_value_and_the_references() {
        let s = Series {
            name: "a".into(),
            colour: palette_colour(0),
            points: vec![(0.0, 2.0), (1.0, f64::NAN), (1.0, 4.0)],
            dashed: false,
            markers: false,
        };
        let (lo, hi) = data_y_range(&chart(vec![s]));
        assert!(lo < 0.0 && hi > 4.0 && lo > -0.5 && hi < 4.5, "{lo} {hi}");
        assert_eq!(data_y_range(&LineChart { references: vec![], ..chart(vec![]) }), (0.0, 1.0));
        assert_eq!(palette_colour(10), palette_colour(0));
        assert_eq!(x_range(&XAxis::Numeric { min: 3.0, max: 3.0, integers: true }), (2.5, 3.5));
    }
}
