//! A PostgreSQL server of a test's own, from the installed server binaries, that the test stops
//! and starts again: an outage the shared test server cannot stage. As root it runs as the
//! `postgres` user (the server refuses root), like `scripts/test`'s.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// A new cluster in a fresh directory, started on a free port.
    pub fn start() -> Self {
        let bindir = bindir();
        let dir = std::env::temp_dir().join(format!(
            "entities-cluster-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let chowned = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chowned.success(), "chown of the cluster's directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self { bindir, dir, port };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        cluster.start_again();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash or a `-m immediate` stop would.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["stop", "-D", &self.data(), "-m", "immediate", "-w"],
        );
    }

    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log.display().to_string(),
                "-w",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// A command running one of the server's binaries, as the `postgres` user when root.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bindir.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .current_dir("/")
            .stdout(std::process::Stdio::null());
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let status = self
            .command(program, args)
            .status()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        assert!(status.success(), "{program} {args:?}: {status}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl", &["stop", "-D", &self.data(), "-m", "immediate"])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// The directory of the installed server binaries: `PG_BINDIR`, `pg_config --bindir`, or the
/// newest `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PG_BINDIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        candidates.push(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .collect();
    versions.sort();
    candidates.extend(versions.into_iter().rev());
    candidates
        .into_iter()
        .find(|dir| Path::new(dir).join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .expect("PostgreSQL's server binaries (initdb, pg_ctl): set PG_BINDIR")
}
