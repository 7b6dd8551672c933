//! `cargo xtask`: the project's own tasks (ci, demo, seed, bench), run with `cargo xtask --help`.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod bench_lens;
mod bench_overhead;
mod bench_postgres;
mod seed;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

/// The project's own tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "flujo's project tasks", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

const EXAMPLES: &str = "\
Examples:
  cargo xtask ci                              fmt check, clippy with warnings denied, tests
  cargo xtask demo                            run the quickstart pipeline, then `flujo lens` over it
  cargo xtask seed --runs 10000 --db /tmp/f.db
  cargo xtask seed --runs 1000000 --spread 90d --db /tmp/h.db   runs spread over 90 days
  cargo xtask bench overhead                  persistence on vs off, side by side
  cargo xtask bench lens --runs 1000000       whole `flujo lens` processes on a big database
  cargo xtask bench postgres --runs 10000     PostgreSQL beside SQLite: writers, overhead, lens";

#[derive(Subcommand)]
enum Task {
    /// Check formatting, run clippy with warnings denied, run the tests.
    Ci,
    /// Run the quickstart example here, then show what it recorded with `flujo lens`.
    Demo,
    /// Fill a database through the real runner and SqliteLayer with a realistic mix of runs.
    Seed(seed::SeedArgs),
    /// Benchmarks that print medians and ratios measured side by side in one invocation.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// (internal) one measured child process of `bench overhead`.
    #[command(hide = true)]
    OverheadChild(bench_overhead::ChildArgs),
    /// (internal) one writer process of `bench postgres`.
    #[command(hide = true)]
    PostgresWriterChild(bench_postgres::WriterChildArgs),
    /// (internal) runs a command and prints its exit code and peak resident set (KiB).
    #[command(hide = true)]
    PeakRss(bench_lens::PeakRssArgs),
}

#[derive(Subcommand)]
enum Bench {
    /// Pipelines with persistence on and off, alternating: overhead, writer throughput, memory.
    Overhead(bench_overhead::OverheadArgs),
    /// Time whole `flujo lens` processes on a seeded database.
    Lens(bench_lens::LensArgs),
    /// PostgreSQL beside SQLite, on a server of its own: writer throughput from 4 processes,
    /// typical overhead, whole `flujo lens` processes over a large history.
    Postgres(bench_postgres::PostgresArgs),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Ci => ci(),
        Task::Demo => demo(),
        Task::Seed(args) => seed::run(&args).map(|_| ()),
        Task::Bench { bench } => match bench {
            Bench::Overhead(args) => bench_overhead::run(&args),
            Bench::Lens(args) => bench_lens::run(&args),
            Bench::Postgres(args) => bench_postgres::run(&args),
        },
        Task::OverheadChild(args) => bench_overhead::child(&args),
        Task::PostgresWriterChild(args) => bench_postgres::writer_child(&args),
        Task::PeakRss(args) => bench_lens::peak_rss(&args),
    }
}

/// The workspace root (xtask lives one level below it).
/// `path` as a reader of the output would write it: relative to the workspace root when below
/// it (`target/bench/lens-1000000.db`), else whole.
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Run a command, inheriting stdio, after showing it; fail with the command line when it fails.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    run_silently(cmd)
}

/// Run a command, inheriting stdio; fail with the command line when it fails.
pub(crate) fn run_silently(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn ci() -> Result<()> {
    let root = workspace_root();
    run_cmd(
        cargo()
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    run_cmd(cargo().current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_cmd(cargo().current_dir(&root).args(["test", "--workspace"]))
}

fn demo() -> Result<()> {
    let root = workspace_root();
    let manifest = root.join("Cargo.toml");
    // cargo run keeps the current directory, so flujo_ops.db lands where the user stands.
    println!("$ cargo run --release --example quickstart");
    run_silently(
        cargo()
            .args(["run", "--release", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .args(["--example", "quickstart"]),
    )?;
    let flujo = build_flujo_binary()?;
    for args in [&["lens", "list"][..], &["lens", "show", "latest"][..]] {
        println!("\n$ flujo {}", args.join(" "));
        run_silently(Command::new(&flujo).args(args))?;
    }
    Ok(())
}

/// Build the release `flujo` binary and return its path.
pub(crate) fn build_flujo_binary() -> Result<PathBuf> {
    let root = workspace_root();
    run_silently(cargo().current_dir(&root).args([
        "build",
        "--release",
        "--quiet",
        "--bin",
        "flujo",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("flujo");
    if !bin.exists() {
        bail!("built flujo but found no binary at {}", bin.display());
    }
    Ok(bin)
}
