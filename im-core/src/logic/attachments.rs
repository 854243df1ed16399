//! Attachments on the send and recall paths: a body naming an uploaded
//! object is checked against the policy and the storage before the send is
//! queued; recalling it can delete the object.

use crate::attachments::body_key;
use crate::error::{Error, Result};
use crate::id::UserId;
use crate::model::Message;
use crate::protocol::SendRequest;

use super::Logic;

impl Logic {
    /// Checks an attachment body: its fields (policy), that it names an
    /// upload of this sender into this conversation, and that the object is
    /// stored with the declared size (and type, where the storage says).
    /// Nothing to check when attachments are off or the body names no object.
    pub(super) async fn check_attachment(&self, sender: UserId, r: &SendRequest) -> Result<()> {
        let Some(objects) = &self.ports.objects else {
            return Ok(());
        };
        let conversation = r.to.conversation(sender)?;
        let Some(att) =
            self.config
                .attachments
                .check_body(sender, conversation, r.kind, &r.body)?
        else {
            return Ok(());
        };
        let meta = objects.head(&att.key).await?.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no uploaded object {}: upload it before sending",
                att.key
            ))
        })?;
        if meta.size != att.size {
            return Err(Error::InvalidArgument(format!(
                "the uploaded object is {} bytes but the body says {}",
                meta.size, att.size
            )));
        }
        if let Some(t) = meta.content_type.filter(|t| !t.is_empty()) {
            let essence = |m: &str| {
                m.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            };
            if essence(&t) != essence(&att.mime) {
                return Err(Error::InvalidArgument(format!(
                    "the uploaded object is {t} but the body says {}",
                    att.mime
                )));
            }
        }
        metrics::counter!("im_attachments_sent_total", "kind" => r.kind.as_str()).increment(1);
        Ok(())
    }

    /// After a recall: deletes the message's object when configured (a
    /// failure is logged; the recall itself stands).
    pub(super) async fn forget_attachment(&self, message: &Message) {
        let (Some(objects), true) = (
            &self.ports.objects,
            self.config.attachments.delete_on_recall,
        ) else {
            return;
        };
        let Some(key) = body_key(message.kind, &message.body) else {
            return;
        };
        match objects.delete(key).await {
            Ok(()) => metrics::counter!("im_attachments_deleted_total").increment(1),
            Err(e) => tracing::warn!(key, error = %e, "could not delete a recalled attachment"),
        }
    }
}
