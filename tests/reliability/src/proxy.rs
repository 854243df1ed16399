//! A fault-injecting TCP proxy (to be written by the reliability suite).
