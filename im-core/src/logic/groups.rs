//! Groups: creation (the creator owns it), membership changes and
//! administration by role, listing. Every change after creation is announced
//! in the group's conversation by a `system` message, so it syncs like any
//! message; members' conversation lists follow membership.

use serde_json::json;

use crate::error::{Error, Result};
use crate::id::{now_ms, ConversationId, GroupId, UserId};
use crate::model::{Group, Member, Role};

use super::Logic;

/// Group name rule: 1–64 characters, not only whitespace.
pub fn validate_group_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "group name must be 1-64 characters".into(),
        ));
    }
    Ok(())
}

/// An administrative change to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    /// New display name (owner or admin).
    Rename {
        /// The name (1–64 characters).
        name: String,
    },
    /// Promote a member to admin or demote an admin to member (owner only).
    SetRole {
        /// The member.
        user: UserId,
        /// `Admin` or `Member`.
        role: Role,
    },
    /// Hand ownership to another member; the old owner becomes an admin
    /// (owner only).
    Transfer {
        /// The new owner.
        to: UserId,
    },
    /// Mute the whole group until a time, or unmute it (owner or admin):
    /// while muted only the owner and admins may send.
    Mute {
        /// Unix ms; `None` unmutes; `i64::MAX` mutes until unmuted.
        until: Option<i64>,
    },
    /// Mute one member until a time, or unmute it (the owner mutes anyone
    /// else, an admin mutes plain members).
    MuteMember {
        /// The member.
        user: UserId,
        /// Unix ms; `None` unmutes; `i64::MAX` mutes until unmuted.
        until: Option<i64>,
    },
    /// Delete the group and its memberships (owner only); history stays
    /// readable by nobody, sends are `not_found`.
    Dissolve,
    /// Whether members added from now on see the history from before they
    /// joined (v1.2; owner or admin).
    SetHistoryVisible {
        /// `true`: they see it all; `false` (the default): from their join on.
        visible: bool,
    },
}

impl Logic {
    pub(super) async fn create_group(&self, actor: UserId, name: &str) -> Result<GroupId> {
        validate_group_name(name)?;
        let group = Group {
            id: GroupId(self.next_id()),
            name: name.to_owned(),
            owner: actor,
            created_at: now_ms(),
            muted_until: None,
            history_visible: self.config.new_groups_show_history,
        };
        self.ports.groups.create(&group).await?;
        self.ports
            .conversations
            .join(actor, ConversationId::Group(group.id))
            .await?;
        self.announce(
            actor,
            group.id,
            json!({"event": "group_created", "actor": actor, "name": name}),
            None,
        )
        .await;
        Ok(group.id)
    }

    /// The actor's membership, `not_found` for an unknown group.
    async fn member_or_404(&self, group: GroupId, user: UserId) -> Result<Option<Member>> {
        let member = self.ports.groups.member(group, user).await?;
        if member.is_none() && self.ports.groups.get(group).await?.is_none() {
            return Err(Error::NotFound(format!("no group {group}")));
        }
        Ok(member)
    }

    /// The actor's role, `permission_denied` for a non-member.
    async fn role_of_member(&self, group: GroupId, user: UserId) -> Result<Role> {
        match self.member_or_404(group, user).await? {
            Some(m) => Ok(m.role),
            None => Err(Error::PermissionDenied(format!(
                "you are not a member of group {group}"
            ))),
        }
    }

    /// Posts a `system` message in the group. The change it announces is
    /// already made, so a failure is logged, not returned.
    ///
    /// `audience` pins the recipients (members before a removal or a
    /// dissolution, who would otherwise miss it); `None` means the members at
    /// push time.
    async fn announce(
        &self,
        actor: UserId,
        group: GroupId,
        body: serde_json::Value,
        audience: Option<Vec<UserId>>,
    ) {
        if let Err(e) = self.submit_system(actor, group, body, audience).await {
            tracing::warn!(error = %e, %group, "announcing a group change failed");
        }
    }

    pub(super) async fn add_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
    ) -> Result<()> {
        match self.member_or_404(group, actor).await?.map(|m| m.role) {
            Some(Role::Owner | Role::Admin) => {}
            _ => {
                return Err(Error::PermissionDenied(
                    "only the owner or an admin can add members".into(),
                ))
            }
        }
        if self.ports.users.existing(&[user]).await?.is_empty() {
            return Err(Error::NotFound(format!("no user {user}")));
        }
        // v1.2: nobody adds a user who blocks them (said as little as possible).
        if self
            .ports
            .contacts
            .reach(&[(actor, user)])
            .await?
            .first()
            .is_some_and(|r| r.blocked)
        {
            return Err(Error::PermissionDenied(format!(
                "you cannot add user {user} to a group"
            )));
        }
        // v1.2 join cutoff: the member reads from here on (unless the group
        // shows earlier history), and nothing before counts as unread.
        let conversation = ConversationId::Group(group);
        let joined_seq = self.ports.sequences.current(conversation).await?;
        self.ports
            .groups
            .add_member(group, Member::new(user, Role::Member).joined_at(joined_seq))
            .await?;
        self.ports.conversations.join(user, conversation).await?;
        if joined_seq > 0 {
            self.ports
                .conversations
                .mark_read(user, conversation, joined_seq)
                .await?;
        }
        self.announce(
            actor,
            group,
            json!({"event": "member_added", "actor": actor, "user": user}),
            None,
        )
        .await;
        Ok(())
    }

    pub(super) async fn remove_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
    ) -> Result<()> {
        let actor_role = self.member_or_404(group, actor).await?.map(|m| m.role);
        let target_role = self.ports.groups.role_of(group, user).await?;
        let allowed = match (actor_role, target_role) {
            (None, _) => false,
            // The owner cannot leave (ownership must be transferred first).
            (_, Some(Role::Owner)) => false,
            (Some(_), _) if actor == user => true,
            (Some(Role::Owner), _) => true,
            (Some(Role::Admin), Some(Role::Member) | None) => true,
            _ => false,
        };
        if !allowed {
            return Err(Error::PermissionDenied(
                "not allowed to remove this member".into(),
            ));
        }
        if target_role.is_none() {
            return Err(Error::NotFound(format!(
                "user {user} is not a member of group {group}"
            )));
        }
        let before: Vec<UserId> = self
            .ports
            .groups
            .members(group)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        self.ports.groups.remove_member(group, user).await?;
        self.ports
            .conversations
            .leave(user, ConversationId::Group(group))
            .await?;
        let event = if actor == user {
            "member_left"
        } else {
            "member_removed"
        };
        self.announce(
            actor,
            group,
            json!({"event": event, "actor": actor, "user": user}),
            Some(before),
        )
        .await;
        Ok(())
    }

    pub(super) async fn members(&self, actor: UserId, group: GroupId) -> Result<Vec<Member>> {
        self.role_of_member(group, actor).await?;
        self.ports.groups.members(group).await
    }

    pub(super) async fn group(&self, actor: UserId, group: GroupId) -> Result<Group> {
        self.role_of_member(group, actor).await?;
        self.ports
            .groups
            .get(group)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no group {group}")))
    }

    pub(super) async fn administer_group(
        &self,
        actor: UserId,
        group: GroupId,
        command: GroupCommand,
    ) -> Result<()> {
        let role = self.role_of_member(group, actor).await?;
        let denied = |what: &str| Err(Error::PermissionDenied(format!("only {what}")));
        let groups = &self.ports.groups;
        let body = match command {
            GroupCommand::SetHistoryVisible { visible } => {
                if role == Role::Member {
                    return denied("the owner or an admin can change who sees the history");
                }
                groups.set_history_visible(group, visible).await?;
                json!({"event": "history_visibility", "actor": actor, "visible": visible})
            }
            GroupCommand::Rename { name } => {
                if role == Role::Member {
                    return denied("the owner or an admin can rename the group");
                }
                validate_group_name(&name)?;
                groups.rename(group, &name).await?;
                json!({"event": "group_renamed", "actor": actor, "name": name})
            }
            GroupCommand::SetRole { user, role: new } => {
                if role != Role::Owner {
                    return denied("the owner can promote or demote members");
                }
                if new == Role::Owner {
                    return Err(Error::InvalidArgument(
                        "use a transfer to make someone the owner".into(),
                    ));
                }
                match groups.role_of(group, user).await? {
                    None => {
                        return Err(Error::NotFound(format!(
                            "user {user} is not a member of group {group}"
                        )))
                    }
                    Some(Role::Owner) => {
                        return Err(Error::InvalidArgument(
                            "the owner's role changes only by a transfer".into(),
                        ))
                    }
                    Some(_) => {}
                }
                groups.set_role(group, user, new).await?;
                json!({"event": "role_changed", "actor": actor, "user": user, "role": new})
            }
            GroupCommand::Transfer { to } => {
                if role != Role::Owner {
                    return denied("the owner can transfer ownership");
                }
                if to == actor {
                    return Err(Error::InvalidArgument("you already own this group".into()));
                }
                if groups.role_of(group, to).await?.is_none() {
                    return Err(Error::NotFound(format!(
                        "user {to} is not a member of group {group}"
                    )));
                }
                groups.transfer(group, to).await?;
                json!({"event": "owner_changed", "actor": actor, "user": to})
            }
            GroupCommand::Mute { until } => {
                if role == Role::Member {
                    return denied("the owner or an admin can mute the group");
                }
                groups.mute_group(group, until).await?;
                json!({"event": if until.is_some() { "group_muted" } else { "group_unmuted" },
                       "actor": actor, "until": until})
            }
            GroupCommand::MuteMember { user, until } => {
                if role == Role::Member {
                    return denied("the owner or an admin can mute members");
                }
                let target = groups.role_of(group, user).await?.ok_or_else(|| {
                    Error::NotFound(format!("user {user} is not a member of group {group}"))
                })?;
                let allowed = user != actor
                    && matches!(
                        (role, target),
                        (Role::Owner, _) | (Role::Admin, Role::Member)
                    );
                if !allowed {
                    return denied("the owner mutes other members, and admins mute plain members");
                }
                groups.mute_member(group, user, until).await?;
                json!({"event": if until.is_some() { "member_muted" } else { "member_unmuted" },
                       "actor": actor, "user": user, "until": until})
            }
            GroupCommand::Dissolve => {
                if role != Role::Owner {
                    return denied("the owner can dissolve the group");
                }
                let members = groups.members(group).await?;
                let audience = members.iter().map(|m| m.user_id).collect();
                // Announce first (to the members as they were): afterwards the
                // group is gone and a send to it is refused.
                self.announce(
                    actor,
                    group,
                    json!({"event": "group_dissolved", "actor": actor}),
                    Some(audience),
                )
                .await;
                groups.delete(group).await?;
                for m in members {
                    self.ports
                        .conversations
                        .leave(m.user_id, ConversationId::Group(group))
                        .await?;
                }
                return Ok(());
            }
        };
        self.announce(actor, group, body, None).await;
        Ok(())
    }
}
