//! The Lua scripts of the Redis backend, loaded once and run by `EVALSHA`
//! (reloaded automatically when the server answers `NOSCRIPT`, e.g. after a
//! restart or `SCRIPT FLUSH`).

use std::sync::LazyLock;

use super::Lua;

/// The send pipeline's admission of one partition's batch (`scripts/admit.lua`).
pub(crate) static ADMIT: LazyLock<Lua> =
    LazyLock::new(|| Lua::new("admit script", include_str!("scripts/admit.lua")));

/// Taking or renewing a partition lease (`scripts/lease_acquire.lua`).
pub(crate) static LEASE_ACQUIRE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "lease acquire script",
        include_str!("scripts/lease_acquire.lua"),
    )
});

/// Freeing a partition lease (`scripts/lease_release.lua`).
pub(crate) static LEASE_RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        "lease release script",
        include_str!("scripts/lease_release.lua"),
    )
});

/// Giving back an unused block of seqs (`scripts/seq_rewind.lua`).
pub(crate) static SEQ_REWIND: LazyLock<Lua> =
    LazyLock::new(|| Lua::new("seq rewind script", include_str!("scripts/seq_rewind.lua")));

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

/// Claiming idempotency keys in their key partition (`scripts/claim.lua`).
pub(crate) static CLAIM: LazyLock<Lua> =
    LazyLock::new(|| Lua::new("claim script", include_str!("scripts/claim.lua")));

/// Giving up claims of sends that were not admitted (`scripts/unclaim.lua`).
pub(crate) static UNCLAIM: LazyLock<Lua> =
    LazyLock::new(|| Lua::new("unclaim script", include_str!("scripts/unclaim.lua")));

/// Taking a token of a throttle bucket (`scripts/throttle_take.lua`).
pub(crate) static THROTTLE_TAKE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/throttle_take.lua")));

/// Counting a failure and starting its lockout (`scripts/throttle_fail.lua`).
pub(crate) static THROTTLE_FAIL: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/throttle_fail.lua")));

/// The time left of a lockout (`scripts/throttle_lockout.lua`).
pub(crate) static THROTTLE_LOCKOUT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/throttle_lockout.lua")));
