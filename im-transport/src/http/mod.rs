//! The HTTP API (axum): every endpoint of the protocol under `/api/v1`, the
//! JSON error shape, the OpenAPI document at `/api/v1/openapi.json`,
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Layout (dependencies point down the list, never up):
//! - [`router`]: [`ApiConfig`], [`ApiState`] and the route table ([`api_router`]);
//! - [`openapi`]: the document, built from the handlers' `#[utoipa::path]`s;
//! - handlers by resource: `accounts`, `messages`, `conversations`,
//!   `presence`, `groups`, [`connect`] (with [`WsLocator`]), [`attachments`],
//!   [`devices`], [`people`];
//! - [`extract`]: what handlers take from a request (JSON body, caller,
//!   client address, ids);
//! - [`dto`] and [`schema`]: request/response bodies and the doc-only
//!   schemas of core types; [`errors`]: the error shape and statuses.

mod accounts;
pub mod attachments;
pub mod connect;
mod conversations;
pub mod devices;
pub mod dto;
pub mod errors;
pub mod extract;
mod groups;
mod messages;
pub mod openapi;
pub mod ops;
pub mod people;
mod presence;
pub mod router;
pub mod schema;

pub use accounts::REGISTRATION_PROOF_HEADER;
pub use connect::{SameHostLocator, WsLocator};
pub use errors::ApiError;
pub use extract::client_ip;
pub use openapi::ApiDoc;
pub use ops::{install_metrics, ReadyCheck};
pub use router::{api_router, ApiConfig, ApiState};

/// The former home of the router, its state and the locators, kept so that
/// `im_transport::http::routes::…` paths keep working.
pub mod routes {
    pub use super::accounts::REGISTRATION_PROOF_HEADER;
    pub use super::connect::{SameHostLocator, WsLocator};
    pub use super::extract::client_ip;
    pub use super::router::{api_router, ApiConfig, ApiState};
}
