//! pgperf's integration tests: ONE test binary (so it builds and links once) against a real
//! PostgreSQL, in a container shared by the run (or the server in PGPERF_DATABASE_URL).

mod support;

mod abuse;
mod alerting;
mod cli;
mod connections;
mod counters;
mod crud;
mod faults;
mod hangs;
mod hostile;
mod ingest;
mod load;
mod migrations;
mod monitoring;
mod plans;
mod pool;
mod resolve;
mod search;
mod server;
mod service;
mod signals;
// Last but one in name order: the tests that hold the timing gate exclusively (see its doc).
mod timing;
mod transactions;
