//! The HTTP API (axum): every endpoint of the protocol under `/api/v1`, the
//! JSON error shape, the OpenAPI document at `/api/v1/openapi.json`,
//! `/healthz`, `/readyz` and `/metrics`.

pub mod attachments;
pub mod devices;
pub mod errors;
pub mod openapi;
pub mod ops;
pub mod people;
pub mod routes;

pub use errors::ApiError;
pub use openapi::ApiDoc;
pub use ops::{install_metrics, ReadyCheck};
pub use routes::{
    api_router, client_ip, ApiConfig, ApiState, WsLocator, REGISTRATION_PROOF_HEADER,
};
