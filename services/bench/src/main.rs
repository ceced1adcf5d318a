//! anju-bench: measures anju's speeds on this machine (see docs/benchmarks.md).

fn main() {
    eprintln!("usage: anju-bench <log|e2e|relay> [options]");
    std::process::exit(2);
}
