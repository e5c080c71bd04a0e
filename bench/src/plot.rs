//! The plots, as SVG (plotters' SVG backend: text is left to the viewer's fonts, so no font
//! library is needed to draw them).

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::report::Curve;

type Plotted = Result<(), Box<dyn std::error::Error>>;

/// W1: mean latency per window of actions against the history's length.
pub fn w1(path: &Path, title: &str, curve: &Curve) -> Plotted {
    plot(
        path,
        title,
        curve,
        ("actions on the entity so far", "mean ms per action"),
    )
}

/// W2: throughput against concurrent clients.
pub fn w2(path: &Path, title: &str, curve: &Curve) -> Plotted {
    plot(path, title, curve, ("concurrent clients", "actions/s"))
}

type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn plot(path: &Path, title: &str, curve: &Curve, (x_desc, y_desc): (&str, &str)) -> Plotted {
    let top = curve
        .runtime
        .iter()
        .chain(&curve.baseline)
        .copied()
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max)
        * 1.15;
    let right = curve.x.last().copied().unwrap_or(1.0) * 1.05;
    let root = SVGBackend::new(path, (860, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..right, 0f64..top.max(0.001))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    lines(&mut chart, curve)?;
    root.present()?;
    Ok(())
}

/// The runtime's and the baseline's lines, with points and a legend.
fn lines(chart: &mut Chart<'_>, curve: &Curve) -> Plotted {
    for (ys, color, label) in [
        (&curve.runtime, BLUE, "runtime"),
        (&curve.baseline, RED, "hand-written sqlx"),
    ] {
        let points: Vec<(f64, f64)> = curve.x.iter().copied().zip(ys.iter().copied()).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    Ok(())
}
