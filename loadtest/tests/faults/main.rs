//! The fault and abuse suite of issue 10: each scenario runs steady background load (JSON and SSE
//! chat calls through two edges, on a key resource and a managed-identity resource, an event with
//! caps), causes one fault or attack, prints its figures on one line (`[faults] …`) and asserts
//! what must hold. The figures are the ones docs/reliability.md quotes.
//!
//! Scenarios run one at a time (they measure latency and kill processes), loopback only, each
//! bounded in time: `cargo test -p aiproxy-loadtest --test faults -- --nocapture`.

mod control_plane_outage;
mod edge_sigterm;
mod hanging_upstream;
mod hostile_clients;
mod postgres_outage;
mod redis_outage;
mod support;
mod throttled_member;
