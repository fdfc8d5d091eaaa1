//! Attendees kept apart under attack. Attendee B tries to reach attendee A's objects the ways an
//! attacker would — paths that a front end resolves elsewhere (dot segments in every encoding,
//! encoded separators, backslashes, `;` parameters, control characters, ids outside Azure's
//! alphabet), other spellings of a route, references hidden in request bodies, forged ids in
//! streamed answers, stale ownership after a delete, resources taken out of the event — against
//! a mock that normalises paths and routes case-insensitively as Azure's front ends do. Every
//! attempt must be refused without reaching upstream, and every refused reference must work when
//! it names the caller's own object: confinement, not blanket refusal.
//!
//! One test binary (`cargo test --test e2e_isolation`), one module per kind of attack.

mod data_sources;
mod lifecycle;
mod lists;
mod paths;
mod references;
mod responses;
mod search_tools;
mod support;
