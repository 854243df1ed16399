//! The Lua scripts of the Redis backend, loaded once and run by `EVALSHA`
//! (reloaded automatically when the server answers `NOSCRIPT`, e.g. after a
//! restart or `SCRIPT FLUSH`).

use std::sync::LazyLock;

/// The send pipeline's batch admission (`scripts/admit.lua`).
pub(crate) static ADMIT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/admit.lua")));
