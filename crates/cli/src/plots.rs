//! Line charts as SVG (plotters, SVG backend only): accuracy against width per rule, Add-task
//! loss against width, alignment against width with controls, log-log dynamics error against
//! width with a reference slope, training curves.
//!
//! Logarithmic axes are drawn by transforming the data (`log2` for widths, so doublings are
//! equally spaced; `log10` for errors) and labelling ticks with the original values.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::CliError;

/// How an axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Values as they are.
    Linear,
    /// `log2(v)`: ticks at powers of two (widths).
    Log2,
    /// `log10(v)`: ticks at powers of ten (errors, losses).
    Log10,
}

impl Axis {
    fn map(self, v: f64) -> Option<f64> {
        let m = match self {
            Axis::Linear => v,
            Axis::Log2 => v.log2(),
            Axis::Log10 => v.log10(),
        };
        (v.is_finite() && m.is_finite()).then_some(m)
    }

    fn label(self, t: f64) -> String {
        match self {
            Axis::Linear => fmt_sig(t),
            Axis::Log2 => {
                if (t - t.round()).abs() < 1e-6 {
                    format!("{}", 2f64.powi(t.round() as i32))
                } else {
                    String::new()
                }
            }
            Axis::Log10 => {
                // Label only 1, 2 and 5 times a power of ten (ticks are 0.1 apart in log10).
                // The tick at log10(5) = 0.699 sits at 0.7; it is labelled with the round value.
                let v = 10f64.powf(t);
                let decade = 10f64.powf(v.log10().floor());
                let m = v / decade;
                [1.0, 2.0, 5.0, 10.0]
                    .iter()
                    .find(|&&d| (m - d).abs() < 0.03 * d)
                    .map_or_else(String::new, |d| fmt_sig(d * decade))
            }
        }
    }

    /// How many tick labels to ask plotters for over `span` (in mapped units).
    fn ticks(self, span: f64) -> usize {
        match self {
            Axis::Linear => 8,
            Axis::Log2 => (span.floor() as usize + 1).clamp(2, 14),
            Axis::Log10 if span > 6.0 => (span.ceil() as usize + 1).clamp(2, 14),
            Axis::Log10 => ((span / 0.1).ceil() as usize + 1).clamp(2, 61),
        }
    }
}

/// A number with about three significant digits and no trailing zeros.
pub fn fmt_sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points in data units; non-finite points break the line.
    pub points: Vec<(f64, f64)>,
    /// Dashed (references and controls) instead of solid.
    pub dashed: bool,
    /// Palette index (series sharing a colour share an index).
    pub color: usize,
    /// Draw a marker at every point.
    pub markers: bool,
    /// A shaded band `(x, low, high)` in the series' colour (a 95% interval over seeds); empty
    /// for none. Non-finite ends break the band.
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A solid line with markers in palette colour `color`.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: usize) -> Self {
        Series {
            label: label.into(),
            points,
            dashed: false,
            color,
            markers: true,
            band: Vec::new(),
        }
    }

    /// The same series with a shaded band `(x, low, high)` around it.
    pub fn with_band(mut self, band: Vec<(f64, f64, f64)>) -> Self {
        self.band = band;
        self
    }

    /// The same series drawn dashed.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }

    /// The same series without markers.
    pub fn no_markers(mut self) -> Self {
        self.markers = false;
        self
    }

    /// A dashed horizontal line at `y` from `x.0` to `x.1`, without markers (a limit).
    pub fn horizontal(label: impl Into<String>, y: f64, x: (f64, f64), color: usize) -> Self {
        Series::new(label, vec![(x.0, y), (x.1, y)], color)
            .dashed()
            .no_markers()
    }

    /// A straight reference line of slope `slope` in log-log coordinates through `(x0, y0)`,
    /// spanning `x0..x1` (e.g. the `width^(-1/2)` rate).
    pub fn power_law(label: impl Into<String>, slope: f64, x0: f64, y0: f64, x1: f64) -> Self {
        let pts = [x0, x1]
            .iter()
            .map(|&x| (x, y0 * (x / x0).powf(slope)))
            .collect();
        Series::new(label, pts, 9).dashed().no_markers()
    }
}

/// A line chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Caption above the plot.
    pub title: String,
    /// X-axis description.
    pub x_label: String,
    /// Y-axis description.
    pub y_label: String,
    /// X mapping.
    pub x_axis: Axis,
    /// Y mapping.
    pub y_axis: Axis,
    /// Lines in drawing order.
    pub series: Vec<Series>,
    /// Fixed y range in data units (otherwise fitted to the data).
    pub y_range: Option<(f64, f64)>,
}

/// Size of every chart in pixels.
const WIDTH: u32 = 1000;
/// Height of every chart in pixels.
const HEIGHT: u32 = 520;
/// Width of the legend panel.
const LEGEND_WIDTH: u32 = 250;

/// Tableau-10 colours, then grey for references.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(90, 90, 90),
];

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> CliError {
    CliError::Failure(format!("drawing a plot: {e}"))
}

impl Chart {
    /// A chart with the given axes and no series yet (y range fitted to the data).
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        x_axis: Axis,
        y_label: impl Into<String>,
        y_axis: Axis,
    ) -> Self {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_axis,
            y_axis,
            series: Vec::new(),
            y_range: None,
        }
    }

    /// Mapped points of a series split into runs of drawable points.
    fn segments(&self, s: &Series) -> Vec<Vec<(f64, f64)>> {
        let mut out = vec![Vec::new()];
        for &(x, y) in &s.points {
            match (self.x_axis.map(x), self.y_axis.map(y)) {
                (Some(a), Some(b)) => out.last_mut().map(|v| v.push((a, b))).unwrap_or(()),
                _ => {
                    if out.last().is_some_and(|v| !v.is_empty()) {
                        out.push(Vec::new());
                    }
                }
            }
        }
        out.retain(|v| !v.is_empty());
        out
    }

    /// Mapped band polygons of a series: each run of drawable `(x, low, high)` as the closed
    /// outline low edge left to right, high edge right to left.
    fn band_polygons(&self, s: &Series) -> Vec<Vec<(f64, f64)>> {
        let mut runs: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new()];
        for &(x, lo, hi) in &s.band {
            match (self.x_axis.map(x), self.y_axis.map(lo), self.y_axis.map(hi)) {
                (Some(a), Some(l), Some(h)) => {
                    runs.last_mut().map(|v| v.push((a, l, h))).unwrap_or(())
                }
                _ => {
                    if runs.last().is_some_and(|v| !v.is_empty()) {
                        runs.push(Vec::new());
                    }
                }
            }
        }
        runs.into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| {
                let mut poly: Vec<(f64, f64)> = r.iter().map(|&(x, l, _)| (x, l)).collect();
                poly.extend(r.iter().rev().map(|&(x, _, h)| (x, h)));
                poly
            })
            .collect()
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| {
                self.segments(s)
                    .into_iter()
                    .flatten()
                    .chain(self.band_polygons(s).into_iter().flatten())
            })
            .collect();
        let span = |v: &mut dyn Iterator<Item = f64>| {
            v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            })
        };
        let (mut x0, mut x1) = span(&mut pts.iter().map(|p| p.0));
        let (mut y0, mut y1) = match self.y_range {
            Some((a, b)) => match (self.y_axis.map(a), self.y_axis.map(b)) {
                (Some(a), Some(b)) => (a, b),
                _ => span(&mut pts.iter().map(|p| p.1)),
            },
            None => span(&mut pts.iter().map(|p| p.1)),
        };
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        let pad = |a: f64, b: f64, f: f64| {
            let w = if b > a { b - a } else { a.abs().max(1.0) };
            (a - f * w, b + f * w)
        };
        let (x0, x1) = if self.x_axis == Axis::Log2 {
            (x0 - 0.25, x1 + 0.25)
        } else {
            pad(x0, x1, 0.03)
        };
        let (y0, y1) = if self.y_range.is_some() {
            (y0, y1)
        } else {
            pad(y0, y1, 0.08)
        };
        ((x0, x1), (y0, y1))
    }

    /// The legend, in its own panel right of the plot so it never hides data.
    fn draw_legend(&self, area: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), CliError> {
        let font = ("sans-serif", 18).into_font();
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let mut y = 70;
        for s in &self.series {
            let color = PALETTE[s.color % PALETTE.len()];
            let style = color.stroke_width(3);
            if s.dashed {
                for x in [4, 16, 28] {
                    area.draw(&PathElement::new(vec![(x, y), (x + 7, y)], style))
                        .map_err(draw_err)?;
                }
            } else {
                area.draw(&PathElement::new(vec![(4, y), (36, y)], style))
                    .map_err(draw_err)?;
            }
            if s.markers {
                area.draw(&Circle::new((20, y), 4, color.filled()))
                    .map_err(draw_err)?;
            }
            area.draw(&Text::new(
                s.label.clone(),
                (44, y),
                font.color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(draw_err)?;
            y += 28;
        }
        Ok(())
    }

    fn draw(&self, whole: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), CliError> {
        whole.fill(&WHITE).map_err(draw_err)?;
        let (root, legend) = whole.split_horizontally(WIDTH - LEGEND_WIDTH);
        self.draw_legend(&legend)?;
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 26))
            .margin(18)
            .x_label_area_size(52)
            .y_label_area_size(92)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        let (xa, ya) = (self.x_axis, self.y_axis);
        let x_fmt = move |v: &f64| xa.label(*v);
        let y_fmt = move |v: &f64| ya.label(*v);
        let n_x = xa.ticks(x1 - x0);
        let n_y = ya.ticks(y1 - y0);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_labels(n_x)
            .y_labels(n_y)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .axis_desc_style(("sans-serif", 21))
            .label_style(("sans-serif", 18))
            .light_line_style(RGBColor(246, 246, 246))
            .bold_line_style(RGBColor(222, 222, 222))
            .draw()
            .map_err(draw_err)?;
        // bands first, so every line is drawn over them
        for s in &self.series {
            let color = PALETTE[s.color % PALETTE.len()];
            for poly in self.band_polygons(s) {
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        poly,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(draw_err)?;
            }
        }
        for s in &self.series {
            let color = PALETTE[s.color % PALETTE.len()];
            let style = color.stroke_width(2);
            for seg in self.segments(s) {
                if s.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(seg.clone(), 9, 6, style))
                        .map_err(draw_err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(seg.clone(), style))
                        .map_err(draw_err)?;
                }
                if s.markers {
                    chart
                        .draw_series(seg.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(draw_err)?;
                }
            }
        }
        whole.present().map_err(draw_err)
    }

    /// The chart as an SVG document (`WIDTH × HEIGHT`, legend panel on the right).
    pub fn to_svg(&self) -> Result<String, CliError> {
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root)?;
        }
        Ok(buf)
    }

    /// Writes the SVG to `path` (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let svg = self.to_svg()?;
        crate::fsutil::write_atomic(path, svg.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        assert_eq!(fmt_sig(0.5), "0.5");
        assert_eq!(fmt_sig(0.012345), "0.0123");
        assert_eq!(fmt_sig(1234.0), "1234");
        assert_eq!(fmt_sig(12.5), "12.5");
        assert_eq!(fmt_sig(1e-5), "1.0e-5");
    }

    #[test]
    fn log2_ticks_label_powers_of_two_only() {
        assert_eq!(Axis::Log2.label(6.0), "64");
        assert_eq!(Axis::Log2.label(6.5), "");
        assert_eq!(Axis::Log10.label(-2.0), "0.01");
        assert_eq!(Axis::Log10.label(-1.7), "0.02");
        assert_eq!(Axis::Log10.label(0.7), "5");
        assert_eq!(Axis::Log10.label(-1.8), "");
    }

    #[test]
    fn svg_has_title_axes_and_legend() {
        let mut c = Chart::new(
            "Accuracy",
            "width",
            Axis::Log2,
            "test accuracy",
            Axis::Linear,
        );
        c.series.push(Series::new(
            "bp",
            vec![(64.0, 0.9), (256.0, 0.95), (1024.0, 0.97)],
            0,
        ));
        c.series.push(Series::new(
            "align-zero",
            vec![(64.0, f64::NAN), (256.0, 0.93), (1024.0, 0.96)],
            1,
        ));
        c.series
            .push(Series::power_law("width^-1/2", -0.5, 64.0, 1.0, 1024.0));
        let svg = c.to_svg().unwrap();
        if let Ok(p) = std::env::var("WIDEALIGN_PLOT_TEST_SVG") {
            std::fs::write(p, &svg).unwrap();
        }
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "Accuracy",
            "width",
            "test accuracy",
            "bp",
            "align-zero",
            "64",
            "1024",
        ] {
            assert!(
                svg.contains(&format!("\n{text}\n</text>")),
                "missing {text}"
            );
        }
    }

    /// A band is drawn as one filled polygon per unbroken run, under the lines, and widens the
    /// fitted y range.
    #[test]
    fn bands_are_polygons_and_widen_the_range() {
        let mut c = Chart::new("t", "x", Axis::Log2, "y", Axis::Linear);
        let s = Series::new("a", vec![(8.0, 1.0), (16.0, 2.0), (32.0, 3.0)], 0).with_band(vec![
            (8.0, 0.5, 1.5),
            (16.0, f64::NAN, 2.5),
            (32.0, -1.0, 7.0),
            (64.0, 2.0, 4.0),
        ]);
        let polys = c.band_polygons(&s);
        assert_eq!(polys.len(), 2, "the NaN end breaks the band");
        assert_eq!(polys[0], [(3.0, 0.5), (3.0, 1.5)]);
        assert_eq!(polys[1], [(5.0, -1.0), (6.0, 2.0), (6.0, 4.0), (5.0, 7.0)]);
        c.series.push(s);
        let (_, (y0, y1)) = c.ranges();
        assert!(y0 < -1.0 && y1 > 7.0, "{y0} {y1}");
        let svg = c.to_svg().unwrap();
        assert!(svg.contains("<polygon"), "no band drawn");
        let plain = Chart {
            series: vec![Series::new("a", vec![(8.0, 1.0), (16.0, 2.0)], 0)],
            ..Chart::new("t", "x", Axis::Log2, "y", Axis::Linear)
        };
        assert!(!plain.to_svg().unwrap().contains("<polygon"));
    }

    #[test]
    fn empty_chart_still_renders() {
        let c = Chart::new("Nothing", "x", Axis::Linear, "y", Axis::Log10);
        assert!(c.to_svg().unwrap().contains("Nothing"));
    }

    #[test]
    fn power_law_halves_per_quadrupling() {
        let s = Series::power_law("r", -0.5, 64.0, 0.2, 256.0);
        assert!((s.points[1].1 - 0.1).abs() < 1e-12);
        assert!(s.dashed);
    }
}
