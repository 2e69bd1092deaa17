//! Runs one micro-benchmark workload a fixed number of times, for
//! `bench/callgrind.sh`, which counts its instructions under valgrind's
//! callgrind (deterministic, unlike wall time on a shared machine).
//!
//! `callgrind WORKLOAD ITERATIONS`; only [`measured`] is counted (callgrind
//! `--toggle-collect`), so setup such as compiling the policy is left out.
//! `callgrind --list` prints the workload names.

mod workloads;

use workloads::{NAMES, Workload};

/// The counted part: `iterations` runs of the prepared workload.
#[inline(never)]
fn measured(workload: &mut Workload, iterations: u64) {
    workload.run(iterations);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // cargo bench passes `--bench`; ignore flags we do not know.
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--") || *a == "--list")
        .collect();
    match args.as_slice() {
        ["--list"] => NAMES.iter().for_each(|n| println!("{n}")),
        [name, iterations] => {
            let iterations: u64 = iterations.parse().expect("ITERATIONS is a number");
            let mut workload = Workload::prepare(name);
            // One untimed round so lazily initialised state is not counted.
            workload.run_once();
            measured(&mut workload, iterations);
        }
        // `cargo bench` without arguments: a quick smoke run of every workload.
        [] => {
            for name in NAMES {
                let mut workload = Workload::prepare(name);
                measured(&mut workload, 2);
            }
        }
        _ => {
            eprintln!("usage: callgrind WORKLOAD ITERATIONS | callgrind --list");
            std::process::exit(2);
        }
    }
}
