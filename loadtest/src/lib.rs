//! Test and benchmark support shared by every end-to-end test and the benchmark driver:
//! `mock` is the mock Azure upstream, `stack` starts the real control-plane and edge binaries on
//! loopback and drives the admin API, `load` is the bounded load generator.

pub mod identity;
pub mod load;
pub mod mock;
pub mod stack;
