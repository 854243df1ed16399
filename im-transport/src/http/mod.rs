//! The HTTP API (axum): every endpoint of the protocol under `/api/v1`, the
//! JSON error shape, `/healthz`, `/readyz` and `/metrics`.

pub mod errors;
pub mod ops;
pub mod routes;

pub use errors::ApiError;
pub use ops::{install_metrics, ReadyCheck};
pub use routes::{api_router, ApiConfig, ApiState, WsLocator};
