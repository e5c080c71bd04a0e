//! The figures of a run: printed as a table of ratios, written as JSON and Markdown, and plotted.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

/// One reported figure: the runtime's value, the baseline's, and their ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub workload: String,
    pub metric: String,
    pub runtime: f64,
    pub baseline: Option<f64>,
    /// runtime / baseline.
    pub ratio: Option<f64>,
    /// The target, in words, and whether this run met it.
    pub target: Option<String>,
    pub met: Option<bool>,
}

impl Figure {
    pub fn new(workload: &str, metric: &str, runtime: f64, baseline: Option<f64>) -> Self {
        Self {
            workload: workload.to_owned(),
            metric: metric.to_owned(),
            runtime,
            baseline,
            ratio: baseline.map(|baseline| runtime / baseline),
            target: None,
            met: None,
        }
    }

    pub fn target(mut self, target: &str, met: bool) -> Self {
        self.target = Some(target.to_owned());
        self.met = Some(met);
        self
    }
}

/// The median of `values` (which it sorts).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn markdown(backend: &str, figures: &[Figure], smoke: bool) -> String {
    let mut out = format!(
        "### {backend}{}\n\n",
        if smoke {
            " (smoke sizes: not comparable)"
        } else {
            ""
        }
    );
    out.push_str("| workload | metric | runtime | baseline | runtime / baseline | target | met |\n|---|---|---|---|---|---|---|\n");
    for f in figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.workload,
            f.metric,
            number(f.runtime),
            f.baseline.map(number).unwrap_or_else(|| "-".into()),
            f.ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            f.target.clone().unwrap_or_else(|| "-".into()),
            match (smoke, f.met) {
                (true, _) | (_, None) => "-",
                (false, Some(true)) => "yes",
                (false, Some(false)) => "**no**",
            }
        );
    }
    out
}

fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// W1: mean latency per 100 actions against the history's length, runtime and baseline.
pub fn plot_w1(
    path: &Path,
    ours: &[f64],
    theirs: &[f64],
) -> Result<(), Box<dyn std::error::Error>> {
    let top = ours.iter().chain(theirs).copied().fold(0.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "W1: mean latency per 100 actions vs history",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..(ours.len().max(1) * 100) as f64, 0f64..top.max(0.001))?;
    chart
        .configure_mesh()
        .x_desc("actions so far")
        .y_desc("ms per action")
        .draw()?;
    for (series, color, label) in [(ours, BLUE, "runtime"), (theirs, RED, "hand-written sqlx")] {
        chart
            .draw_series(LineSeries::new(
                series
                    .iter()
                    .enumerate()
                    .map(|(i, &ms)| ((i * 100 + 50) as f64, ms)),
                color,
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}

/// W2: throughput against clients, runtime and baseline.
pub fn plot_w2(
    path: &Path,
    clients: &[usize],
    ours: &[f64],
    theirs: &[f64],
) -> Result<(), Box<dyn std::error::Error>> {
    let top = ours.iter().chain(theirs).copied().fold(0.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("W2: actions/s vs concurrent clients", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..(*clients.last().unwrap_or(&1) as f64 * 1.05),
            0f64..top.max(1.0),
        )?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("actions/s")
        .draw()?;
    for (series, color, label) in [(ours, BLUE, "runtime"), (theirs, RED, "hand-written sqlx")] {
        chart
            .draw_series(LineSeries::new(
                clients
                    .iter()
                    .zip(series)
                    .map(|(&c, &rate)| (c as f64, rate)),
                color,
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()?;
    Ok(())
}
