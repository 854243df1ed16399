//! im-discovery
