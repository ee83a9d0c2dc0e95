//! Prints, as JSON, what recording one invocation's metrics costs, in
//! nanoseconds, with one thread and with every CPU's thread recording into
//! the same function's metrics. `npm run bench` reads it.

fn main() {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let iterations = 2_000_000;
    let _warm = edgefc_core::runtime::observe::recording_cost(1, iterations / 10);
    let alone = edgefc_core::runtime::observe::recording_cost(1, iterations);
    let contended = edgefc_core::runtime::observe::recording_cost(threads, iterations);
    let figures = serde_json::json!({
        "threads": threads,
        "aloneNanos": alone.as_nanos() as u64,
        "contendedNanos": contended.as_nanos() as u64,
    });
    println!("{figures}");
}
