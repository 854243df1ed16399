//! `MySqlShards`: the message archive and conversation index over several
//! MySQL databases, one [`MySqlStore`] per shard, spread by conversation with
//! [`im_core::compose::ShardMap`] (the queue's partition function).
//!
//! Each shard gets the whole schema (migrations are per database), but only
//! `messages`, `conversations`, `user_conversations` and the mention index fill
//! up there; users, groups and memberships, devices, contacts and blocks stay
//! on the primary database.

use std::sync::Arc;

use im_core::compose::{ShardMap, ShardedConversationStore, ShardedMessageStore};
use im_core::ports::{ConversationStore, MessageStore};
use im_core::Error;

use super::{MySqlConfig, MySqlStore};

/// The archive's shards: one pool per database, in shard order.
#[derive(Clone)]
pub struct MySqlShards {
    map: ShardMap,
    stores: Vec<MySqlStore>,
    messages: Arc<ShardedMessageStore>,
    conversations: Arc<ShardedConversationStore>,
}

impl std::fmt::Debug for MySqlShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlShards")
            .field("map", &self.map)
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

impl MySqlShards {
    /// Connects to every URL of `urls` (shard *i* is `urls[i]`) with the
    /// pool settings of `template` (its URL is ignored), migrating each when
    /// it says so. `partitions` is the queue's partition count.
    pub async fn connect(
        template: &MySqlConfig,
        urls: &[String],
        partitions: u32,
    ) -> Result<MySqlShards, Error> {
        let map = ShardMap::new(partitions, u32::try_from(urls.len()).unwrap_or(u32::MAX))?;
        let connects = urls.iter().map(|url| {
            let config = MySqlConfig {
                url: url.clone(),
                ..template.clone()
            };
            async move { MySqlStore::connect(&config).await }
        });
        let stores = futures::future::join_all(connects)
            .await
            .into_iter()
            .zip(urls)
            .enumerate()
            .map(|(i, (r, url))| {
                r.map_err(|e| Error::unavailable(format!("archive shard {i} ({})", redact(url)), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        MySqlShards::build(map, stores)
    }

    /// Shards over stores already connected (shard *i* is `stores[i]`).
    pub fn from_stores(stores: Vec<MySqlStore>, partitions: u32) -> Result<MySqlShards, Error> {
        let map = ShardMap::new(partitions, u32::try_from(stores.len()).unwrap_or(u32::MAX))?;
        MySqlShards::build(map, stores)
    }

    fn build(map: ShardMap, stores: Vec<MySqlStore>) -> Result<MySqlShards, Error> {
        let messages = stores
            .iter()
            .map(|s| Arc::new(s.messages()) as Arc<dyn MessageStore>)
            .collect();
        let conversations = stores
            .iter()
            .map(|s| Arc::new(s.conversations()) as Arc<dyn ConversationStore>)
            .collect();
        Ok(MySqlShards {
            map,
            messages: Arc::new(ShardedMessageStore::new(map, messages)?),
            conversations: Arc::new(ShardedConversationStore::new(map, conversations)?),
            stores,
        })
    }

    /// The map from conversation to shard.
    pub fn map(&self) -> ShardMap {
        self.map
    }

    /// The shards' stores, in shard order.
    pub fn stores(&self) -> &[MySqlStore] {
        &self.stores
    }

    /// The message archive over all shards.
    pub fn messages(&self) -> Arc<ShardedMessageStore> {
        self.messages.clone()
    }

    /// The conversation index over all shards (shard *i* reads the archive
    /// of shard *i*).
    pub fn conversations(&self) -> Arc<ShardedConversationStore> {
        self.conversations.clone()
    }

    /// Closes every pool.
    pub async fn close(&self) {
        futures::future::join_all(self.stores.iter().map(|s| s.close())).await;
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            super::redact("mysql://im:s3cret@db-1:3306/im"),
            "mysql://im:***@db-1:3306/im"
        );
        assert_eq!(
            super::redact("mysql://root@127.0.0.1:3307/test"),
            "mysql://root@127.0.0.1:3307/test"
        );
    }
}
