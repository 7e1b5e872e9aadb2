//! Soak: an hour of steady mixed load on the real binary, on SQLite and on PostgreSQL at once
//! or on one alone (`tests/api/soak.rs` says what it does and measures; the API tests run its
//! three-minute form). Exits non-zero if a task, a webhook or money was lost.
//!
//! `cargo bench -p seedgate --bench soak`; `SEEDGATE_SOAK_MINUTES`,
//! `SEEDGATE_SOAK_INTERVAL_SECONDS` and `SEEDGATE_SOAK_RATE` change its length, sampling and
//! rate; `SEEDGATE_SOAK_BACKEND=sqlite` (or `postgres`) runs one backend alone.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/api/fake_ark.rs"]
mod fake_ark;
#[allow(dead_code)]
#[path = "../tests/api/served.rs"]
mod served;
#[path = "../tests/api/soak.rs"]
mod soak;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if runtime.block_on(soak::run(soak::Settings::from_env(true))) {
        std::process::exit(1);
    }
}
