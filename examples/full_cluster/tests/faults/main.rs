#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Process-level fault scenarios of issue 9 on the real multi-process cluster
//! (2 logic, 2 task, 2 connect and 1 api processes of `full_cluster`), on the
//! machine's Redis, MariaDB and etcd or on private servers started here:
//!
//! - #3 a task process SIGKILLed between read and ack under load;
//! - #4 a connect node SIGKILLed with 1,000 live sockets;
//! - #6 Redis (private, AOF `appendfsync always`) SIGKILLed and restarted;
//! - #7 MySQL cut through the fault-injecting proxy;
//! - #8 etcd (private) restarted, and a connect node partitioned from it;
//!   #8b checks that the sessions of a node that rejoined discovery get
//!   pushes at once (product bug B4 of docs/reliability.md, fixed).
//!
//! Each prints one `RELIABILITY …` line (`reliability::report::Tally`) and
//! fails when an acked message was lost or stored twice, or when its own
//! checks fail. The scenarios run one at a time (a process-wide lock): each
//! starts its own cluster, and on 2 cores their timing figures would disturb
//! each other. `RELIABILITY_LONG=1` makes the MySQL cut 30 s (8 s by default)
//! and the Redis outage 15 s (3 s by default).
//!
//! One file per scenario; `setup`, `traffic`, `queue`, `raw_ws` and
//! `etcd_rig` hold what several of them use, and `../harness` the processes.

#[path = "../harness/mod.rs"]
mod harness;

mod etcd_rig;
mod queue;
mod raw_ws;
mod setup;
mod traffic;

mod s03_task_sigkill;
mod s04_connect_sigkill;
mod s06_redis_restart;
mod s07_mysql_cut;
mod s08_etcd_restart;
mod s08b_rejoined_node;
