//! The benchmark: the runtime against hand-written sqlx issuing the same statements, in one run,
//! on Postgres and on SQLite. Every figure is printed as runtime / baseline, a median over
//! repeated runs, and written to `bench/results/`. Run it with `scripts/bench` (release build,
//! a throwaway Postgres with fsync on when `DATABASE_URL` is unset); `--smoke` runs tiny sizes
//! and checks nothing, so CI keeps it building and running.

mod baseline;
mod report;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use entities_runtime::Backend;
use report::{Figure, median};
use workloads::Sizes;

#[derive(Debug, Parser)]
struct Args {
    /// Tiny sizes, one repeat: a check that the benchmark runs, not a measurement.
    #[arg(long)]
    smoke: bool,
    /// `postgres`, `sqlite` or `both`. Postgres needs `DATABASE_URL` (scripts/bench sets it).
    #[arg(long, default_value = "both")]
    backend: String,
    /// Repeats of W1, W2 and W4; the medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Where the results and plots go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (sizes, repeats) = if args.smoke {
        (Sizes::SMOKE, 1)
    } else {
        (Sizes::FULL, args.repeats.max(1))
    };
    let backends: Vec<Backend> = match args.backend.as_str() {
        "postgres" => vec![Backend::Postgres],
        "sqlite" => vec![Backend::Sqlite],
        _ => vec![Backend::Sqlite, Backend::Postgres],
    };
    std::fs::create_dir_all(&args.out).expect("results directory");
    let mut all = String::new();
    for backend in backends {
        let name = match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        println!("== {name} ==");
        let figures = run(backend, &sizes, repeats, &args.out, name).await;
        let table = report::markdown(name, &figures, args.smoke);
        println!("{table}");
        all.push_str(&table);
        all.push('\n');
        let json = serde_json::to_string_pretty(&figures).expect("JSON");
        std::fs::write(args.out.join(format!("{name}.json")), json).expect("results file");
        std::fs::write(args.out.join(format!("{name}.md")), table).expect("results file");
    }
    if !args.smoke {
        std::fs::write(args.out.join("results.md"), all).expect("results file");
    }
}

async fn run(
    backend: Backend,
    sizes: &Sizes,
    repeats: usize,
    out: &std::path::Path,
    name: &str,
) -> Vec<Figure> {
    let mut figures = Vec::new();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;

    // W1: long history.
    let (mut rates, mut base_rates, mut firsts, mut lasts, mut flat) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut curves = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let (ours, theirs) = workloads::w1(backend, sizes.w1_actions).await;
        let mean =
            |slice: &[Duration]| slice.iter().map(ms).sum::<f64>() / slice.len().max(1) as f64;
        let window = 100.min(ours.len());
        let (first, last) = (mean(&ours[..window]), mean(&ours[ours.len() - window..]));
        rates.push(ours.len() as f64 / ours.iter().map(|d| d.as_secs_f64()).sum::<f64>());
        base_rates.push(theirs.len() as f64 / theirs.iter().map(|d| d.as_secs_f64()).sum::<f64>());
        firsts.push(first);
        lasts.push(last);
        flat.push(last / first);
        curves = (
            ours.chunks(100).map(mean).collect(),
            theirs.chunks(100).map(mean).collect(),
        );
    }
    let (rate, base_rate) = (median(&mut rates), median(&mut base_rates));
    figures.push(
        Figure::new("W1", "actions/s", rate, Some(base_rate))
            .target(">= 0.9x baseline", rate >= 0.9 * base_rate),
    );
    figures.push(Figure::new(
        "W1",
        "mean ms, actions 1-100",
        median(&mut firsts),
        None,
    ));
    let flatness = median(&mut flat);
    figures.push(
        Figure::new("W1", "mean ms, last 100 / first 100", flatness, None)
            .target("<= 1.1 (flat)", flatness <= 1.1),
    );
    if let Err(error) = report::plot_w1(&out.join(format!("{name}-w1.svg")), &curves.0, &curves.1) {
        eprintln!("W1 plot not written: {error}");
    }

    // W2: spread, then W3 on the last (most concurrent) W2 database.
    let mut w2_ours = Vec::new();
    let mut w2_theirs = Vec::new();
    let mut w3_input = None;
    for &clients in sizes.w2_clients {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let (rate, base, runtime, ids, db) = workloads::w2(backend, sizes, clients).await;
            ours.push(rate);
            theirs.push(base);
            if let Some((old, _, _)) = w3_input.replace((runtime, ids, db)) {
                old.shutdown().await;
            }
        }
        let (rate, base) = (median(&mut ours), median(&mut theirs));
        let mut figure = Figure::new(
            "W2",
            &format!("actions/s, {clients} clients"),
            rate,
            Some(base),
        );
        if clients == 32 {
            figure = figure.target(">= 2x baseline (>= 0.9x at least)", rate >= 2.0 * base);
        }
        figures.push(figure);
        w2_ours.push(rate);
        w2_theirs.push(base);
    }
    if let Err(error) = report::plot_w2(
        &out.join(format!("{name}-w2.svg")),
        sizes.w2_clients,
        &w2_ours,
        &w2_theirs,
    ) {
        eprintln!("W2 plot not written: {error}");
    }
    if let Some((runtime, ids, _db)) = w3_input {
        let ((rate, p99), (base_rate, base_p99)) =
            workloads::w3(&runtime, &ids, sizes.w3_gets_per_entity).await;
        figures.push(
            Figure::new("W3", "gets/s", rate, Some(base_rate)).target(">= 1,000,000", rate >= 1e6),
        );
        figures.push(Figure::new("W3", "p99 µs", p99, Some(base_p99)));
        runtime.shutdown().await;
    }

    // W4: cold load.
    let (mut replay, mut snapshot, mut short, mut base) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeats {
        let (r, s, t, b) = workloads::w4(backend, sizes.w4_events).await;
        replay.push(r);
        snapshot.push(s);
        short.push(t);
        base.push(b);
    }
    let events = sizes.w4_events;
    let base = median(&mut base);
    figures.push(Figure::new(
        "W4",
        &format!("ms, load of {events} events, no snapshot"),
        median(&mut replay),
        Some(base),
    ));
    let (snapshot, short) = (median(&mut snapshot), median(&mut short));
    figures.push(Figure::new(
        "W4",
        &format!("ms, load at {events} events from a snapshot"),
        snapshot,
        Some(base),
    ));
    figures.push(
        Figure::new(
            "W4",
            &format!("from snapshot: {events} events / 10 events"),
            snapshot / short,
            None,
        )
        .target("<= 1.5 (same cost)", snapshot / short <= 1.5),
    );

    // W5: footprint (SQLite only: the database does not matter to memory).
    if backend == Backend::Sqlite {
        for &count in sizes.w5_entities {
            let bytes = workloads::w5(count).await;
            figures.push(
                Figure::new(
                    "W5",
                    &format!("bytes per live idle entity beyond its state, {count} live"),
                    bytes,
                    Some(1024.0),
                )
                .target("<= 1 KiB", bytes <= 1024.0),
            );
        }
    }
    figures
}
