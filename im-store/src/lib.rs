//! im-store
