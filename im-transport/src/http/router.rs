//! The `/api/v1` router: its settings ([`ApiConfig`]), what every handler
//! shares ([`ApiState`]), and the route table ([`api_router`]).

use std::sync::Arc;

use axum::routing::{delete, get, post, put};
use axum::Router;
use im_core::connect::RateLimiter;
use im_core::frontdoor::FrontDoor;
use im_core::id::UserId;
use im_core::logic::LogicApi;

use super::connect::WsLocator;
use super::{accounts, connect, conversations, groups, messages, presence};

/// HTTP API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body.
    pub max_body: usize,
    /// HTTP sends per second per user (`None`: unlimited); over it is 429.
    pub send_rate: Option<f64>,
    /// Burst above the rate.
    pub send_burst: f64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body: 64 * 1024,
            send_rate: Some(200.0),
            send_burst: 400.0,
        }
    }
}

/// What the API handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// The Logic layer.
    pub logic: Arc<dyn LogicApi>,
    /// Picks a connect node for `GET /connect`.
    pub locator: Arc<dyn WsLocator>,
    pub(super) limiter: Option<Arc<RateLimiter<UserId>>>,
    pub(super) front_door: Option<Arc<FrontDoor>>,
    pub(super) attachments: Option<Arc<super::attachments::Attachments>>,
    pub(super) devices: Option<Arc<dyn im_core::ports::DeviceStore>>,
}

impl ApiState {
    /// State over a Logic and a locator.
    pub fn new(logic: Arc<dyn LogicApi>, locator: Arc<dyn WsLocator>, config: &ApiConfig) -> Self {
        ApiState {
            logic,
            locator,
            limiter: config
                .send_rate
                .map(|r| Arc::new(RateLimiter::new(r, config.send_burst))),
            front_door: None,
            attachments: None,
            devices: None,
        }
    }

    /// Serves push-token registration and the notification setting (v1.2)
    /// on `devices` (the store the notification dispatcher reads).
    pub fn with_devices(mut self, devices: Arc<dyn im_core::ports::DeviceStore>) -> Self {
        self.devices = Some(devices);
        self
    }

    /// Serves attachments (uploads and downloads, v1.2) on `attachments`.
    /// Logic must have the same storage and policy (`LogicPorts::objects`,
    /// `LogicConfig::attachments`) to check what messages reference.
    pub fn with_attachments(mut self, attachments: super::attachments::Attachments) -> Self {
        self.attachments = Some(Arc::new(attachments));
        self
    }

    /// Guards login and registration with `door` (limits per address and
    /// account, the registration guard). Without one, nothing is limited.
    pub fn with_front_door(mut self, door: Arc<FrontDoor>) -> Self {
        self.front_door = Some(door);
        self
    }
}

/// The `/api/v1` router (with body limit and JSON errors), including its
/// own OpenAPI document at `/api/v1/openapi.json`.
pub fn api_router(state: ApiState, config: &ApiConfig) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(super::openapi::serve_document))
        .route("/users", post(accounts::register))
        .route("/sessions", post(accounts::login).delete(accounts::logout))
        .route("/messages", post(messages::send))
        // A static segment: matched before the `{msg_id}` routes below (and
        // they are one segment longer anyway).
        .route("/messages/scheduled", get(messages::list_scheduled))
        .route("/messages/{msg_id}/recall", post(messages::recall))
        .route(
            "/messages/{msg_id}/schedule",
            delete(messages::cancel_scheduled),
        )
        .route("/conversations", get(conversations::conversations))
        .route(
            "/conversations/{conversation_id}/messages",
            get(messages::history),
        )
        .route(
            "/conversations/{conversation_id}/read",
            post(conversations::mark_read),
        )
        .route("/users/{user_id}/presence", get(presence::presence))
        .route("/groups", post(groups::create_group))
        .route(
            "/groups/{group_id}",
            get(groups::group_info)
                .patch(groups::rename_group)
                .delete(groups::dissolve_group),
        )
        .route("/groups/{group_id}/transfer", post(groups::transfer_group))
        .route("/groups/{group_id}/mute", put(groups::mute_group))
        .route(
            "/groups/{group_id}/members",
            post(groups::add_member).get(groups::list_members),
        )
        .route(
            "/groups/{group_id}/members/{user_id}",
            delete(groups::remove_member),
        )
        .route(
            "/groups/{group_id}/members/{user_id}/role",
            put(groups::set_member_role),
        )
        .route(
            "/groups/{group_id}/members/{user_id}/mute",
            put(groups::mute_member),
        )
        .route("/connect", get(connect::connect))
        .merge(super::attachments::routes(state.attachments.as_deref()))
        .merge(super::devices::routes())
        .merge(super::people::routes())
        .method_not_allowed_fallback(super::errors::method_not_allowed)
        .with_state(state);
    Router::new()
        .nest("/api/v1", api)
        .layer(axum::extract::DefaultBodyLimit::max(config.max_body))
}
