//! # embed_axum: im inside an application that already exists
//!
//! The host ([`host`]) is an ordinary axum application with its own `users`
//! table in PostgreSQL, its own sign-up and login, and a session token (the
//! `sid` cookie, also returned in the login body). [`app`] adds chat to it:
//! - im runs in the same process ([`NodeBuilder`]) and is mounted under
//!   `/chat` ([`AppBuilder::mounted_at`]): `/chat/api/v1/…`, `/chat/ws`;
//! - im's WebSocket and API accept the host's session tokens through a
//!   custom `Authenticator` ([`chat::HostLogin`]);
//! - im's users are the host's users, read from the host's table through a
//!   custom `UserStore` ([`chat::HostUsers`]);
//! - im's own tables (groups, messages, conversation lists, contacts) live
//!   in the same PostgreSQL database, in the schema `im`, beside the host's.
//!
//! The queue, sessions and seqs stay in memory (one process); a deployment
//! of several processes uses the Redis backends instead (see
//! `examples/full_cluster`).

pub mod chat;
pub mod host;

use std::sync::Arc;

use axum::Router;
use im_core::builder::NodeBuilder;
use im_core::node::Node;
use im_store::postgres::PgStore;
use im_transport::app::AppBuilder;
use sqlx::PgPool;

use chat::{HostLogin, HostUsers};
use host::HostState;

/// The schema holding im's tables, beside the host's in `public`.
pub const IM_SCHEMA: &str = "im";

/// `url` with connections searching only `schema` (libpq's `options`).
pub fn in_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// The host application with im mounted under `/chat`, and the im node
/// (shut it down when the server stops).
pub struct Embedded {
    /// The whole application.
    pub router: Router,
    /// im's four layers.
    pub node: Node,
}

/// Creates the host's tables and im's (in the schema [`IM_SCHEMA`] of the
/// same database) and assembles the application.
pub async fn app(database_url: &str) -> Result<Embedded, String> {
    let db = PgPool::connect(database_url)
        .await
        .map_err(|e| format!("PostgreSQL at {database_url}: {e}"))?;
    host::migrate(&db)
        .await
        .map_err(|e| format!("the application's tables: {e}"))?;
    // im's tables in their own schema of the same database: the schema is
    // made once, and im's connections search it only.
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {IM_SCHEMA}"))
        .execute(&db)
        .await
        .map_err(|e| format!("the schema {IM_SCHEMA}: {e}"))?;
    let im = PgStore::connect(&in_schema(database_url, IM_SCHEMA))
        .await
        .map_err(|e| format!("im's tables: {e}"))?;

    // The wiring: each port set once.
    let node = NodeBuilder::new()
        .with_auth(Arc::new(HostLogin::new(db.clone())))
        .with_users(Arc::new(HostUsers::new(db.clone())))
        .with_groups(Arc::new(im.groups()))
        .with_messages(Arc::new(im.messages()))
        .with_conversations(Arc::new(im.conversations()))
        .with_contacts(Arc::new(im.contacts()))
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let chat = AppBuilder::for_node(&node).mounted_at("/chat").build();
    let router = host::routes()
        .with_state(HostState { db })
        .nest("/chat", chat);
    Ok(Embedded { router, node })
}
