//! The figures of a run: medians of the repeats, runtime / baseline ratios and the issue's
//! targets; written as JSON and as a Markdown table (also printed).

use std::fmt::Write as _;

use serde::Serialize;

/// One reported figure: the median of the runtime's runs, of the baseline's, and their ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub workload: &'static str,
    pub metric: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub runtime: f64,
    pub baseline: Option<f64>,
    /// runtime / baseline.
    pub ratio: Option<f64>,
    /// Every run's value (every sample's, for W4), the medians' inputs.
    pub runtime_runs: Vec<f64>,
    pub baseline_runs: Vec<f64>,
}

impl Figure {
    pub fn new(
        workload: &'static str,
        metric: impl Into<String>,
        unit: &'static str,
        higher_is_better: bool,
        runtime_runs: Vec<f64>,
        baseline_runs: Option<Vec<f64>>,
    ) -> Self {
        let runtime = median(&runtime_runs);
        let baseline = baseline_runs.as_deref().map(median);
        Self {
            workload,
            metric: metric.into(),
            unit,
            higher_is_better,
            runtime,
            baseline,
            ratio: baseline.map(|baseline| runtime / baseline),
            runtime_runs,
            baseline_runs: baseline_runs.unwrap_or_default(),
        }
    }
}

/// One of the targets: the measured value, the goal, and whether it was met (`None` in
/// smoke mode, which checks nothing).
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub value: f64,
    pub goal: String,
    pub pass: Option<bool>,
}

impl Target {
    pub fn new(name: impl Into<String>, value: f64, goal: &str, pass: bool, smoke: bool) -> Self {
        Self {
            name: name.into(),
            value,
            goal: goal.to_owned(),
            pass: (!smoke).then_some(pass),
        }
    }

    pub fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "not checked (smoke)",
        }
    }
}

/// A line of a plot: x values and the runtime's and the baseline's y values.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Curve {
    pub x: Vec<f64>,
    pub runtime: Vec<f64>,
    pub baseline: Vec<f64>,
}

/// Where and on what the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub database: String,
    /// /proc/loadavg (1, 5, 15 minutes) as the run began and as it ended: anything else
    /// running on the machine shows here.
    pub load_before: String,
    pub load_after: String,
}

impl Machine {
    pub fn here(database: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(
                || "unknown".into(),
                |kb| format!("{:.1} GiB", kb / 1048576.0),
            );
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            database,
            load_before: load_average(),
            load_after: String::new(),
        }
    }
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|load| {
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Everything one backend's run wrote: `<backend>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub backend: &'static str,
    pub smoke: bool,
    pub repeats: usize,
    pub seconds: f64,
    pub machine: Machine,
    pub sizes: crate::workloads::Sizes,
    pub figures: Vec<Figure>,
    pub targets: Vec<Target>,
    pub w1_curve: Curve,
    pub w2_curve: Curve,
}

/// The median of `values` (NaN for none).
pub fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn markdown(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(
        out,
        "### {}{}\n\n{}; {} cores, {} memory; {} repeat(s), medians; {:.0} s in all; \
         load average {} at the start, {} at the end.\n",
        m.database,
        if results.smoke {
            " (smoke sizes: a check that it runs, not a measurement)"
        } else {
            ""
        },
        m.cpu,
        m.cores,
        m.memory,
        results.repeats,
        results.seconds,
        m.load_before,
        m.load_after,
    );
    out.push_str("| workload | metric | runtime | baseline | runtime / baseline |\n");
    out.push_str("|---|---|--:|--:|--:|\n");
    for f in &results.figures {
        let better = if f.higher_is_better {
            "higher"
        } else {
            "lower"
        };
        let _ = writeln!(
            out,
            "| {} | {} ({}, {better} is better) | {} | {} | {} |",
            f.workload,
            f.metric,
            f.unit,
            number(f.runtime),
            f.baseline.map_or_else(|| "-".into(), number),
            f.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}x")),
        );
    }
    out.push_str("\n| target | value | goal | result |\n|---|--:|---|---|\n");
    for t in &results.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.name,
            number(t.value),
            t.goal,
            t.verdict()
        );
    }
    out
}

/// Three significant figures or so, thousands separated.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return format!("{value}");
    }
    if value.abs() >= 1000.0 {
        let digits = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{}{grouped}", if value < 0.0 { "-" } else { "" })
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
