//! What an embedder needs, in one `use`: the builder and the node, the
//! Logic API, the ports you are most likely to implement (with
//! `async_trait` to implement them), ids, the model and errors.
//!
//! ```
//! use im_core::prelude::*;
//!
//! struct StaticTokens;
//!
//! #[async_trait]
//! impl Authenticator for StaticTokens {
//!     async fn verify(&self, token: &str) -> Result<Identity> {
//!         match token {
//!             "let-alice-in" => Ok(Identity { user_id: UserId(1), expires_at: None }),
//!             _ => Err(Error::Unauthenticated("unknown token".into())),
//!         }
//!     }
//! }
//! let builder = NodeBuilder::new().with_auth(std::sync::Arc::new(StaticTokens));
//! # let _ = builder;
//! ```

pub use async_trait::async_trait;

pub use crate::builder::NodeBuilder;
pub use crate::error::{Error, ErrorCode, Result};
pub use crate::id::{ConversationId, GroupId, MessageId, SessionId, UserId};
pub use crate::logic::{Logic, LogicApi, LogicConfig, LogicPorts};
pub use crate::model::{Group, Member, Message, MessageKind, Role, Target, User};
pub use crate::node::{Backends, Node, NodeConfig};
pub use crate::ports::{
    Authenticator, ContactStore, ConversationStore, GroupStore, Identity, IssuedToken,
    MessageQueue, MessageStore, SendHook, SessionStore, UserStore,
};
pub use crate::protocol::{SendAck, SendRequest};
