//! Test and benchmark support shared by every end-to-end test and the benchmark driver:
//! `mock` is the mock Azure upstream, `stack` starts the real control-plane and edge binaries on
//! loopback and drives the admin API, `load` is the bounded load generator. For fault tests:
//! `steady` runs mixed background traffic and tells what it lost, `process` reads and signals
//! child processes, `private_servers` starts a Redis or Postgres a test may kill, `relay` is a TCP
//! relay whose connections can go silent.

pub mod identity;
pub mod load;
pub mod mock;
pub mod otlp;
pub mod private_servers;
pub mod process;
pub mod relay;
pub mod stack;
pub mod steady;
