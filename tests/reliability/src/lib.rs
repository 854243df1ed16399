//! Test utilities of the reliability suite: a fault-injecting TCP proxy
//! ([`proxy`]) and the Jepsen-style tally every scenario reports
//! ([`report::Tally`]).
//!
//! The scenarios themselves are the integration tests in `tests/`; each
//! prints one line `scenario | fault | sent acked delivered persisted lost
//! duplicated | figure` and fails when anything acked was lost or persisted
//! twice. `docs/reliability.md` lists them with the command to reproduce.

pub mod proxy;
pub mod report;
