//! SVG line charts (plotters): latency against size for the scaling benchmark, and any other
//! "figure against x" series the harness reports.

use std::path::Path;

use plotters::prelude::*;

/// One line of a chart: its legend and its (x, y) points, x ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart<'a> {
    /// The title.
    pub title: &'a str,
    /// The x axis's description.
    pub x_desc: &'a str,
    /// The y axis's description.
    pub y_desc: &'a str,
    /// Both axes logarithmic (sizes and latencies spanning decades).
    pub log_log: bool,
}

/// The range covering every point's coordinate `pick`: on a log axis widened by 1.5x each
/// way; on a linear one from zero (or the lowest negative value) to 5 % above the highest.
/// A flat line of zeros still gets an axis.
fn span(series: &[Series], pick: impl Fn(&(f64, f64)) -> f64, log: bool) -> (f64, f64) {
    let values = series.iter().flat_map(|s| s.points.iter().map(&pick));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    let (lo, hi) = if log {
        (lo / 1.5, hi * 1.5)
    } else {
        (lo.min(0.0), hi + hi.abs() * 0.05)
    };
    if hi - lo < 1e-9 {
        (lo, lo + 1.0)
    } else {
        (lo, hi)
    }
}

/// Draws `series` into an SVG file at `path`.
pub fn line_chart(path: &Path, chart: &Chart<'_>, series: &[Series]) -> Result<(), String> {
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let (x0, x1) = span(series, |p| p.0, chart.log_log);
        let (y0, y1) = span(series, |p| p.1, chart.log_log);
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(chart.title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72);
        macro_rules! plot {
            ($ctx:expr) => {{
                let mut ctx = $ctx;
                ctx.configure_mesh()
                    .x_desc(chart.x_desc)
                    .y_desc(chart.y_desc)
                    .draw()?;
                for (i, s) in series.iter().enumerate() {
                    let color = Palette99::pick(i).to_rgba();
                    ctx.draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        color.stroke_width(2),
                    ))?
                    .label(&s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                    ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                }
                ctx.configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
            }};
        }
        if chart.log_log {
            plot!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())?);
        } else {
            plot!(builder.build_cartesian_2d(x0..x1, y0..y1)?);
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_with_its_legend() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.svg");
        let series = vec![
            Series {
                name: "search.uncached p95".into(),
                points: vec![(1e3, 2.0), (1e4, 3.0), (1e6, 40.0)],
            },
            Series {
                name: "resolve.one p95".into(),
                points: vec![(1e3, 1.0), (1e6, 20.0)],
            },
        ];
        let chart = Chart {
            title: "p95 latency against size",
            x_desc: "entities",
            y_desc: "ms",
            log_log: true,
        };
        line_chart(&path, &chart, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for text in [
            "search.uncached p95",
            "resolve.one p95",
            "p95 latency against size",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert_eq!(svg.matches("<circle").count(), 5, "one marker per point");
    }

    #[test]
    fn linear_axes_start_at_zero_and_a_flat_zero_line_still_has_one() {
        let flat = [Series {
            name: "waiting".into(),
            points: vec![(1.0, 0.0), (2.0, 0.0)],
        }];
        assert_eq!(span(&flat, |p| p.1, false), (0.0, 1.0));
        assert_eq!(span(&flat, |p| p.0, false), (0.0, 2.1));
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let chart = Chart {
            title: "t",
            x_desc: "x",
            y_desc: "y",
            log_log: false,
        };
        let err = line_chart(Path::new("/nonexistent/dir/c.svg"), &chart, &[]).unwrap_err();
        assert!(err.contains("/nonexistent/dir/c.svg"), "{err}");
    }
}
