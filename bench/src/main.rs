//! The benchmark of issue 4: the runtime against hand-written sqlx issuing the same
//! statements, in one run, on Postgres and on SQLite. Every figure is a median over repeated
//! runs, printed with its runtime / baseline ratio and written to `bench/results/` (JSON, a
//! Markdown table, SVG plots). Run it with `scripts/bench` (release build; a throwaway
//! Postgres with fsync on when `DATABASE_URL` is unset). `--smoke` runs tiny sizes and checks
//! nothing, so CI keeps it building and running.

mod baseline;
mod db;
mod pgbench;
mod plot;
mod report;
mod tally;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use entities_runtime::Backend;
use report::{Curve, Figure, Machine, Results, Target, median};
use workloads::{Sizes, pool_size};

#[derive(Debug, Parser)]
#[command(about = "W1-W6: the runtime against hand-written sqlx")]
struct Args {
    /// Tiny sizes, one repeat, no targets checked: a check that the benchmark runs.
    #[arg(long)]
    smoke: bool,
    /// `sqlite`, `postgres` or `both`. Postgres needs `DATABASE_URL` (scripts/bench sets it);
    /// each measurement makes a database of its own there and drops it.
    #[arg(long, default_value = "both")]
    backend: String,
    /// Repeats of W1-W4 and W6 (W5 runs once per size); medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Only these workloads, e.g. `--only w1,w4` (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// W5's live-entity counts (default 100000,1000000 on SQLite and 100000 on Postgres;
    /// 1000 with --smoke).
    #[arg(long, value_delimiter = ',')]
    w5_sizes: Vec<usize>,
    /// W2's client counts (default 1,8,32,128; 1,8 with --smoke): `--w2-clients 1` to profile
    /// one of them.
    #[arg(long, value_delimiter = ',')]
    w2_clients: Vec<usize>,
    /// Where results and plots go (default bench/results, or target/bench-smoke with --smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: measure W5 with this many entities, in this process, and print the result.
    #[arg(long, hide = true)]
    w5_child: Option<usize>,
}

pub fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let backends = match args.backend.as_str() {
        "postgres" => vec![Backend::Postgres],
        "sqlite" => vec![Backend::Sqlite],
        "both" => vec![Backend::Sqlite, Backend::Postgres],
        other => panic!("--backend {other}: expected sqlite, postgres or both"),
    };
    if let Some(count) = args.w5_child {
        workloads::w5_footprint::child(backends[0], count).await;
        return;
    }
    let (mut sizes, repeats) = if args.smoke {
        (Sizes::SMOKE, 1)
    } else {
        (Sizes::FULL, args.repeats.max(1))
    };
    if !args.w5_sizes.is_empty() {
        sizes.w5_entities = args.w5_sizes.clone().leak();
    }
    if !args.w2_clients.is_empty() {
        sizes.w2_clients = args.w2_clients.clone().leak();
    }
    let sizes_on = |backend: Backend| {
        // Loading over Postgres runs at a few thousand entities a second on this machine:
        // a million would take minutes, for the same per-entity memory as on SQLite.
        if backend == Backend::Postgres && !args.smoke && args.w5_sizes.is_empty() {
            Sizes {
                w5_entities: &[100_000],
                ..sizes
            }
        } else {
            sizes
        }
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = args.out.clone().unwrap_or_else(|| {
        if args.smoke {
            workspace.join("target/bench-smoke")
        } else {
            workspace.join("bench/results")
        }
    });
    std::fs::create_dir_all(&out).expect("the results directory");
    let out = out.canonicalize().expect("the results directory");
    let only = |workload: &str| args.only.is_empty() || args.only.iter().any(|w| w == workload);

    let mut missed = Vec::new();
    for backend in backends {
        let name = backend_name(backend);
        let sizes = sizes_on(backend);
        let started = Instant::now();
        let machine = Machine::here(db::server_version(backend).await);
        progress(format_args!(
            "{name}: {} on {}",
            machine.database, machine.cpu
        ));
        let mut results = Results {
            backend: name,
            smoke: args.smoke,
            repeats,
            seconds: 0.0,
            machine,
            sizes,
            figures: Vec::new(),
            targets: Vec::new(),
            w1_curve: Curve::default(),
            w2_curve: Curve::default(),
        };
        if only("w1") {
            w1(backend, &sizes, repeats, &mut results).await;
        }
        if only("w2") {
            w2(backend, &sizes, repeats, &mut results).await;
        }
        if only("w3") {
            w3(backend, &sizes, repeats, &mut results).await;
        }
        if only("w4") {
            w4(backend, &sizes, repeats, &mut results).await;
        }
        if only("w5") {
            w5(backend, &sizes, &mut results).await;
        }
        if only("w6") {
            w6(backend, &sizes, repeats, &mut results).await;
        }
        if only("w7") {
            w7(backend, &sizes, repeats, &mut results).await;
        }
        results.seconds = started.elapsed().as_secs_f64();
        results.machine.load_after = report::load_average();

        let table = report::markdown(&results);
        println!("\n{table}");
        std::fs::write(out.join(format!("{name}.md")), &table).expect("results file");
        let json = serde_json::to_string_pretty(&results).expect("JSON");
        std::fs::write(out.join(format!("{name}.json")), json).expect("results file");
        if !results.w1_curve.x.is_empty() {
            let path = out.join(format!("{name}-w1.svg"));
            let title = format!("W1 on {name}: latency against history (one client)");
            if let Err(error) = plot::w1(&path, &title, &results.w1_curve) {
                eprintln!("W1 plot not written: {error}");
            }
        }
        if !results.w2_curve.x.is_empty() {
            let path = out.join(format!("{name}-w2.svg"));
            let title = format!("W2 on {name}: throughput against concurrent clients");
            if let Err(error) = plot::w2(&path, &title, &results.w2_curve) {
                eprintln!("W2 plot not written: {error}");
            }
        }
        missed.extend(
            results
                .targets
                .iter()
                .filter(|t| t.pass == Some(false))
                .map(|t| format!("{name}: {}", t.name)),
        );
        progress(format_args!("{name}: results in {}", out.display()));
    }
    // Targets are reported, never asserted: a miss is a finding, not a failure.
    if !missed.is_empty() {
        println!("targets missed: {}", missed.join("; "));
    }
}

fn progress(message: std::fmt::Arguments<'_>) {
    eprintln!("bench: {message}");
}

fn ms(duration: &Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn mean_ms(durations: &[Duration]) -> f64 {
    durations.iter().map(ms).sum::<f64>() / durations.len().max(1) as f64
}

/// Per-run values of `f` over `runs`.
fn each<T>(runs: &[T], f: impl Fn(&T) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

fn timed_progress(what: std::fmt::Arguments<'_>, started: Instant) {
    progress(format_args!(
        "{what}: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

async fn w1(backend: Backend, sizes: &Sizes, repeats: usize, results: &mut Results) {
    let n = sizes.w1_actions;
    let mut runs = Vec::new();
    for repeat in 1..=repeats {
        let started = Instant::now();
        runs.push(workloads::w1_history::run(backend, n).await);
        timed_progress(format_args!("W1 run {repeat}/{repeats}"), started);
    }
    // The windows are actions 1-100 and 1,901-2,000 of 2,000: a twentieth at each end.
    let window = (n / 20).max(1);
    let first = |d: &[Duration]| mean_ms(&d[..window]);
    let last = |d: &[Duration]| mean_ms(&d[d.len() - window..]);
    let rate = |d: &[Duration]| d.len() as f64 / d.iter().map(Duration::as_secs_f64).sum::<f64>();
    let (a, b) = (format!("1-{window}"), format!("{}-{n}", n - window + 1));
    let figures = [
        Figure::new(
            "W1",
            "throughput, one client",
            "actions/s",
            true,
            each(&runs, |r| rate(&r.runtime)),
            Some(each(&runs, |r| rate(&r.baseline))),
        ),
        Figure::new(
            "W1",
            format!("mean latency, actions {a}"),
            "ms",
            false,
            each(&runs, |r| first(&r.runtime)),
            Some(each(&runs, |r| first(&r.baseline))),
        ),
        Figure::new(
            "W1",
            format!("mean latency, actions {b}"),
            "ms",
            false,
            each(&runs, |r| last(&r.runtime)),
            Some(each(&runs, |r| last(&r.baseline))),
        ),
        Figure::new(
            "W1",
            format!("latency growth, mean {b} / mean {a}"),
            "x",
            false,
            each(&runs, |r| last(&r.runtime) / first(&r.runtime)),
            Some(each(&runs, |r| last(&r.baseline) / first(&r.baseline))),
        ),
    ];
    let keyed = Figure::new(
        "W1",
        "throughput with an idempotency key per action (runtime keyed / runtime without)",
        "actions/s",
        true,
        each(&runs, |r| rate(&r.keyed)),
        Some(each(&runs, |r| rate(&r.runtime))),
    );
    let smoke = results.smoke;
    let ratio = figures[0].ratio.unwrap_or(f64::NAN);
    results.targets.push(Target::new(
        "W1 throughput, runtime / baseline",
        ratio,
        ">= 0.9",
        ratio >= 0.9,
        smoke,
    ));
    let growth = figures[3].runtime;
    results.targets.push(Target::new(
        format!("W1 flat: runtime's mean latency {b} / {a}"),
        growth,
        "<= 1.1",
        growth <= 1.1,
        smoke,
    ));
    results.figures.extend(figures);
    results.figures.push(keyed);
    if !runs.is_empty() && runs.iter().all(|run| run.pgbench.is_some()) {
        let reference = Figure::new(
            "W1",
            "throughput, one client, runtime / pgbench sequential",
            "actions/s",
            true,
            each(&runs, |r| rate(&r.runtime)),
            Some(each(&runs, |r| r.pgbench.expect("measured"))),
        );
        let ratio = reference.ratio.unwrap_or(f64::NAN);
        results.targets.push(Target::new(
            "W1, runtime / pgbench sequential",
            ratio,
            ">= 1.3",
            ratio >= 1.3,
            smoke,
        ));
        results.figures.push(reference);
    }

    let buckets = n.div_ceil(window);
    let bucket =
        |d: &[Duration], i: usize| mean_ms(&d[i * window..((i + 1) * window).min(d.len())]);
    results.w1_curve = Curve {
        x: (0..buckets)
            .map(|i| ((i * window) + window / 2) as f64)
            .collect(),
        runtime: (0..buckets)
            .map(|i| median(&each(&runs, |r| bucket(&r.runtime, i))))
            .collect(),
        baseline: (0..buckets)
            .map(|i| median(&each(&runs, |r| bucket(&r.baseline, i))))
            .collect(),
    };
}

async fn w2(backend: Backend, sizes: &Sizes, repeats: usize, results: &mut Results) {
    let p99 = |d: &workloads::Driven| d.latencies.value_at_quantile(0.99) as f64 / 1e6;
    for &clients in sizes.w2_clients {
        let mut runs = Vec::new();
        for repeat in 1..=repeats {
            let started = Instant::now();
            runs.push(workloads::w2_spread::run(backend, sizes, clients).await);
            timed_progress(
                format_args!("W2 {clients} clients run {repeat}/{repeats}"),
                started,
            );
        }
        let pool = pool_size(clients);
        let rate = Figure::new(
            "W2",
            format!("throughput, {clients} clients, pool {pool}"),
            "actions/s",
            true,
            each(&runs, |r| r.runtime.rate()),
            Some(each(&runs, |r| r.baseline.rate())),
        );
        let latency = Figure::new(
            "W2",
            format!("p99 latency, {clients} clients"),
            "ms",
            false,
            each(&runs, |r| p99(&r.runtime)),
            Some(each(&runs, |r| p99(&r.baseline))),
        );
        results.w2_curve.x.push(clients as f64);
        results.w2_curve.runtime.push(rate.runtime);
        results
            .w2_curve
            .baseline
            .push(rate.baseline.unwrap_or(f64::NAN));
        // Never behind the hand-written program, at any concurrency (issue 13).
        let smoke = results.smoke;
        let ratio = rate.ratio.unwrap_or(f64::NAN);
        results.targets.push(Target::new(
            format!("W2 at {clients} clients, runtime / baseline"),
            ratio,
            ">= 1",
            ratio >= 1.0,
            smoke,
        ));
        let p99_ratio = latency.ratio.unwrap_or(f64::NAN);
        results.targets.push(Target::new(
            format!("W2 at {clients} clients, p99 latency runtime / baseline"),
            p99_ratio,
            "<= 1",
            p99_ratio <= 1.0,
            smoke,
        ));
        if clients == 32 {
            results.targets.push(Target::new(
                "W2 at 32 clients, runtime / baseline (stretch)",
                ratio,
                ">= 2",
                ratio >= 2.0,
                smoke,
            ));
        }
        results.figures.extend([rate, latency]);
        if runs.iter().all(|run| run.pgbench.is_some()) && !runs.is_empty() {
            pgbench_figures(clients, &runs, results);
        }
    }
}

/// The runtime at `clients` against pgbench's three references of the same runs.
fn pgbench_figures(clients: usize, runs: &[workloads::w2_spread::W2], results: &mut Results) {
    let runtime = each(runs, |r| r.runtime.rate());
    let reference = |pick: fn(&pgbench::PgbenchRates) -> f64| {
        each(runs, |r| pick(r.pgbench.as_ref().expect("measured")))
    };
    let sequential = Figure::new(
        "W2",
        format!("throughput, {clients} clients, runtime / pgbench sequential"),
        "actions/s",
        true,
        runtime.clone(),
        Some(reference(|p| p.sequential)),
    );
    let pipelined = Figure::new(
        "W2",
        format!("throughput, {clients} clients, runtime / pgbench pipelined"),
        "actions/s",
        true,
        runtime.clone(),
        Some(reference(|p| p.pipelined)),
    );
    let ceiling = Figure::new(
        "W2",
        format!("throughput, {clients} clients, runtime / pgbench one-INSERT commits"),
        "actions/s",
        true,
        runtime,
        Some(reference(|p| p.one_insert)),
    );
    if clients == 32 {
        let ratio = sequential.ratio.unwrap_or(f64::NAN);
        let smoke = results.smoke;
        results.targets.push(Target::new(
            "W2 at 32 clients, runtime / pgbench sequential",
            ratio,
            ">= 2.5",
            ratio >= 2.5,
            smoke,
        ));
    }
    results.figures.extend([sequential, pipelined, ceiling]);
}

async fn w6(backend: Backend, sizes: &Sizes, repeats: usize, results: &mut Results) {
    let mut runs = Vec::new();
    for repeat in 1..=repeats {
        let started = Instant::now();
        runs.push(workloads::w6_moves::run(backend, sizes).await);
        timed_progress(format_args!("W6 run {repeat}/{repeats}"), started);
    }
    let clients = sizes.w6_clients;
    let rate = Figure::new(
        "W6",
        format!(
            "two-entity transactions (moveItem), {clients} clients over {} lists, pool {}",
            sizes.w6_entities,
            pool_size(clients)
        ),
        "moves/s",
        true,
        each(&runs, |r| r.runtime.rate()),
        Some(each(&runs, |r| r.baseline.rate())),
    );
    let p99 = |d: &workloads::Driven| d.latencies.value_at_quantile(0.99) as f64 / 1e6;
    let latency = Figure::new(
        "W6",
        format!("p99 latency of a move, {clients} clients"),
        "ms",
        false,
        each(&runs, |r| p99(&r.runtime)),
        Some(each(&runs, |r| p99(&r.baseline))),
    );
    let ratio = rate.ratio.unwrap_or(f64::NAN);
    let smoke = results.smoke;
    results.targets.push(Target::new(
        "W6 moves, runtime / baseline",
        ratio,
        ">= 1",
        ratio >= 1.0,
        smoke,
    ));
    results.figures.extend([rate, latency]);
}

async fn w7(backend: Backend, sizes: &Sizes, repeats: usize, results: &mut Results) {
    let mut runs = Vec::new();
    for repeat in 1..=repeats {
        let started = Instant::now();
        runs.push(workloads::w7_streams::run(backend, sizes).await);
        timed_progress(format_args!("W7 run {repeat}/{repeats}"), started);
    }
    let clients = sizes.w7_clients;
    let ms_at = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e6;
    let path = match backend {
        Backend::Postgres => "in another runtime",
        Backend::Sqlite => "in the writing runtime",
    };
    let mut figures = vec![
        Figure::new(
            "W7",
            format!("writes under load, {clients} clients"),
            "actions/s",
            true,
            each(&runs, |r| r.writes.rate()),
            None,
        ),
        Figure::new(
            "W7",
            format!("commit to subscriber {path}, p50"),
            "ms",
            false,
            each(&runs, |r| ms_at(&r.delivery, 0.5)),
            None,
        ),
        Figure::new(
            "W7",
            format!("commit to subscriber {path}, p99"),
            "ms",
            false,
            each(&runs, |r| ms_at(&r.delivery, 0.99)),
            None,
        ),
        Figure::new(
            "W7",
            format!("commit to a watcher of the list {path}, p50"),
            "ms",
            false,
            each(&runs, |r| ms_at(&r.freshness, 0.5)),
            None,
        ),
        Figure::new(
            "W7",
            format!("commit to a watcher of the list {path}, p99"),
            "ms",
            false,
            each(&runs, |r| ms_at(&r.freshness, 0.99)),
            None,
        ),
    ];
    let replay = Figure::new(
        "W7",
        format!(
            "projector replaying the log ({} events; popular_items) / the load's write rate",
            runs.first().map_or(0, |r| r.replayed)
        ),
        "events/s",
        true,
        each(&runs, |r| r.replay_rate()),
        Some(each(&runs, |r| r.writes.rate())),
    );
    let p99 = median(&each(&runs, |r| ms_at(&r.delivery, 0.99)));
    let smoke = results.smoke;
    if backend == Backend::Postgres {
        results.targets.push(Target::new(
            "W7 commit to subscriber p99 (ms), Postgres",
            p99,
            "< 50",
            p99 < 50.0,
            smoke,
        ));
    }
    let ratio = replay.ratio.unwrap_or(f64::NAN);
    results.targets.push(Target::new(
        "W7 projector replay / write rate under load",
        ratio,
        ">= 10",
        ratio >= 10.0,
        smoke,
    ));
    figures.push(replay);
    results.figures.extend(figures);
}

async fn w3(backend: Backend, sizes: &Sizes, repeats: usize, results: &mut Results) {
    let mut runs = Vec::new();
    for repeat in 1..=repeats {
        let started = Instant::now();
        runs.push(workloads::w3_reads::run(backend, sizes).await);
        timed_progress(format_args!("W3 run {repeat}/{repeats}"), started);
    }
    let quantile =
        |r: &workloads::w3_reads::Reads, q: f64| r.latencies.value_at_quantile(q) as f64 / 1e3;
    let figures = [
        Figure::new(
            "W3",
            "gets from 32 tasks, beside 8 writing clients",
            "gets/s",
            true,
            each(&runs, |r| r.runtime.rate()),
            Some(each(&runs, |r| r.baseline.rate())),
        ),
        Figure::new(
            "W3",
            "p50 get latency",
            "µs",
            false,
            each(&runs, |r| quantile(&r.runtime, 0.5)),
            Some(each(&runs, |r| quantile(&r.baseline, 0.5))),
        ),
        Figure::new(
            "W3",
            "p99 get latency",
            "µs",
            false,
            each(&runs, |r| quantile(&r.runtime, 0.99)),
            Some(each(&runs, |r| quantile(&r.baseline, 0.99))),
        ),
        Figure::new(
            "W3",
            "writes beside the gets",
            "actions/s",
            true,
            each(&runs, |r| r.runtime.writes.rate()),
            Some(each(&runs, |r| r.baseline.writes.rate())),
        ),
    ];
    let gets = figures[0].runtime;
    results.targets.push(Target::new(
        "W3 gets/s",
        gets,
        ">= 1,000,000",
        gets >= 1e6,
        results.smoke,
    ));
    results.figures.extend(figures);
}

async fn w4(backend: Backend, sizes: &Sizes, repeats: usize, results: &mut Results) {
    let events = sizes.w4_events;
    let mut all = workloads::w4_cold_load::W4::default();
    for repeat in 1..=repeats {
        let started = Instant::now();
        let run = workloads::w4_cold_load::run(backend, events, sizes.w4_samples).await;
        timed_progress(format_args!("W4 run {repeat}/{repeats}"), started);
        all.replay.extend(run.replay);
        all.snapshot.extend(run.snapshot);
        all.snapshot_short.extend(run.snapshot_short);
        all.baseline_replay.extend(run.baseline_replay);
        all.baseline_snapshot.extend(run.baseline_snapshot);
        all.baseline_snapshot_short
            .extend(run.baseline_snapshot_short);
    }
    let short = workloads::w4_cold_load::SHORT;
    let figures = [
        Figure::new(
            "W4",
            format!("cold load, {events} events, no snapshot"),
            "ms",
            false,
            all.replay,
            Some(all.baseline_replay),
        ),
        Figure::new(
            "W4",
            format!("cold load, {events} events, from a snapshot"),
            "ms",
            false,
            all.snapshot,
            Some(all.baseline_snapshot),
        ),
        Figure::new(
            "W4",
            format!("cold load, {short} events, from a snapshot"),
            "ms",
            false,
            all.snapshot_short,
            Some(all.baseline_snapshot_short),
        ),
    ];
    let same = figures[1].runtime / figures[2].runtime;
    results.targets.push(Target::new(
        format!("W4 from a snapshot: {events} events / {short} events"),
        same,
        "<= 1.5",
        same <= 1.5,
        results.smoke,
    ));
    results.figures.extend(figures);
}

async fn w5(backend: Backend, sizes: &Sizes, results: &mut Results) {
    let state = workloads::w5_footprint::STATE_BYTES;
    for &count in sizes.w5_entities {
        let started = Instant::now();
        let footprint =
            tokio::task::spawn_blocking(move || workloads::w5_footprint::run(backend, count))
                .await
                .expect("W5");
        timed_progress(format_args!("W5 {count} live"), started);
        let bytes = footprint.bytes_per_entity;
        results.figures.push(Figure::new(
            "W5",
            format!("memory per live idle entity beyond its state ({state} B), {count} live"),
            "bytes",
            false,
            vec![bytes],
            None,
        ));
        results.figures.push(Figure::new(
            "W5",
            format!("loads making {count} entities live"),
            "loads/s",
            true,
            vec![footprint.loads_per_second],
            None,
        ));
        results.targets.push(Target::new(
            format!("W5 bytes per entity, {count} live"),
            bytes,
            "<= 1024",
            bytes <= 1024.0,
            results.smoke,
        ));
    }
}
