//! The API tests whose subject is the store, again, each server on a PostgreSQL schema of its
//! own (the server `SEEDGATE_TEST_POSTGRES_URL` names, by default the one on 127.0.0.1:5432).
//! Without a server to reach these tests fail; they never skip.
//!
//! Which tests run here: those that exercise what the database keeps and how it changes under
//! concurrency — the task lifecycle (claims, leases, cancels, reads and lists), money (the
//! ledger, reservations, charges, usage by day), idempotency, restarts after `kill -9`,
//! replicas sharing one database (here only: SQLite has no second process to share with),
//! management (organizations, keys, usage and billing), materials, webhook deliveries, the
//! task event streams (driven by the store's change feed),
//! retention sweeps, per-key limits counted in the store, and the upstream engine's scenarios
//! (submissions in doubt, reconciliation, polls, result copies).
//!
//! Which run once, on SQLite only (`tests/api/main.rs`): what does not depend on the store —
//! request validation, the catalog and pricing documents, the OpenAPI document and its
//! schemathesis fuzz run, the console in Chromium, the CLI and the client, the Ark SDK and
//! the Ark surface's shapes, the outbound fetch guard, the sandbox's renders, result storage
//! (local and S3), the listener, and the metrics and log output.
//!
//! The single-server crash run (`chaos`) runs on SQLite only too. Here its workload and its
//! audit run in `replicas`: three servers on this database, one `kill -9`ed twice under the same
//! mixed load. A second single-server run would cost the suite some 50 s of CPU (its sandbox
//! renders) on a 2-core machine for the paths `replicas` and `restart` already take here.
//!
//! `conformance` is compiled in because `helpers::decode` checks every response with it; its
//! one test, of the checker itself, needs no server and runs here as well.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const POSTGRES: bool = true;

#[path = "api/account.rs"]
mod account;
#[path = "api/conformance.rs"]
mod conformance;
#[path = "api/crash.rs"]
mod crash;
#[path = "api/events.rs"]
mod events;
#[path = "api/fake_ark.rs"]
mod fake_ark;
// Shared with the SQLite binary, whose tests use some parts these do not.
#[allow(dead_code)]
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
#[path = "api/money.rs"]
mod money;
#[path = "api/replicas.rs"]
mod replicas;
#[path = "api/restart.rs"]
pub mod restart;
#[path = "api/retention.rs"]
mod retention;
#[path = "api/upstream.rs"]
mod upstream;
#[path = "api/webhooks.rs"]
mod webhooks;
