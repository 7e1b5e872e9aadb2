//! All API tests in one binary (one link on a 2-core machine). Each test starts its own server
//! on a random port with its own data dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// These tests on SQLite; `tests/api_postgres.rs` runs those whose subject is the store again
/// on PostgreSQL.
const POSTGRES: bool = false;

mod account;
mod ark_sdk;
mod blobs;
mod catalog;
mod chaos;
mod cli;
mod client;
mod conformance;
mod console;
mod crash;
mod dependencies;
mod events;
mod fake_ark;
mod fake_vendors;
mod guard;
mod helpers;
mod idempotency;
mod lifecycle;
mod limits;
mod management;
mod materials;
mod metrics;
mod money;
mod openapi;
mod openrouter;
mod operations;
mod outages;
pub mod restart;
mod retention;
mod scenarios;
mod served;
mod serving;
mod soak;
mod storage;
mod upstream;
mod validation;
mod vendors;
mod volc;
mod webhooks;
