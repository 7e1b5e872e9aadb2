//! Every API test again, each server on a PostgreSQL schema of its own (the server
//! `SEEDGATE_TEST_POSTGRES_URL` names, by default the one on 127.0.0.1:5432). Without a server
//! to reach these tests fail; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const POSTGRES: bool = true;

#[path = "api/account.rs"]
mod account;
#[path = "api/ark_sdk.rs"]
mod ark_sdk;
#[path = "api/blobs.rs"]
mod blobs;
#[path = "api/catalog.rs"]
mod catalog;
#[path = "api/chaos.rs"]
mod chaos;
#[path = "api/cli.rs"]
mod cli;
#[path = "api/client.rs"]
mod client;
#[path = "api/conformance.rs"]
mod conformance;
#[path = "api/fake_ark.rs"]
mod fake_ark;
#[path = "api/guard.rs"]
mod guard;
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/idempotency.rs"]
mod idempotency;
#[path = "api/lifecycle.rs"]
mod lifecycle;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/management.rs"]
mod management;
#[path = "api/materials.rs"]
mod materials;
#[path = "api/metrics.rs"]
mod metrics;
#[path = "api/money.rs"]
mod money;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/operations.rs"]
mod operations;
#[path = "api/replicas.rs"]
mod replicas;
#[path = "api/restart.rs"]
pub mod restart;
#[path = "api/retention.rs"]
mod retention;
#[path = "api/storage.rs"]
mod storage;
#[path = "api/upstream.rs"]
mod upstream;
#[path = "api/validation.rs"]
mod validation;
#[path = "api/volc.rs"]
mod volc;
#[path = "api/webhooks.rs"]
mod webhooks;
