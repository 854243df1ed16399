//! The Lua scripts of the Redis backend, loaded once and run by `EVALSHA`
//! (reloaded automatically when the server answers `NOSCRIPT`, e.g. after a
//! restart or `SCRIPT FLUSH`).

use std::sync::LazyLock;

/// The send pipeline's batch admission (`scripts/admit.lua`).
pub(crate) static ADMIT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/admit.lua")));

/// Holding a scheduled send under its key (`scripts/sched_hold.lua`).
pub(crate) static SCHED_HOLD: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/sched_hold.lua")));

/// The due scheduled sends with their items (`scripts/sched_due.lua`).
pub(crate) static SCHED_DUE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/sched_due.lua")));

/// Cancelling a scheduled send of its owner (`scripts/sched_cancel.lua`).
pub(crate) static SCHED_CANCEL: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/sched_cancel.lua")));

/// An owner's scheduled sends (`scripts/sched_pending.lua`).
pub(crate) static SCHED_PENDING: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/sched_pending.lua")));
