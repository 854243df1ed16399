//! Groups: creation (the creator owns it), membership changes by role, listing.

use crate::error::{Error, Result};
use crate::id::{now_ms, GroupId, UserId};
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

impl Logic {
    pub(super) async fn create_group_owned(&self, actor: UserId, name: &str) -> Result<GroupId> {
        validate_group_name(name)?;
        let group = Group {
            id: GroupId(self.next_id()),
            name: name.to_owned(),
            owner: actor,
            created_at: now_ms(),
        };
        self.ports.groups.create(&group).await?;
        Ok(group.id)
    }

    async fn role_or_404(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
        let role = self.ports.groups.role_of(group, user).await?;
        if role.is_none() && self.ports.groups.get(group).await?.is_none() {
            return Err(Error::NotFound(format!("no group {group}")));
        }
        Ok(role)
    }

    pub(super) async fn add_group_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
    ) -> Result<()> {
        match self.role_or_404(group, actor).await? {
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
        self.ports
            .groups
            .add_member(
                group,
                Member {
                    user_id: user,
                    role: Role::Member,
                },
            )
            .await
    }

    pub(super) async fn remove_group_member(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
    ) -> Result<()> {
        let actor_role = self.role_or_404(group, actor).await?;
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
        match target_role {
            None => Err(Error::NotFound(format!(
                "user {user} is not a member of group {group}"
            ))),
            Some(_) => self.ports.groups.remove_member(group, user).await,
        }
    }

    pub(super) async fn list_members(&self, actor: UserId, group: GroupId) -> Result<Vec<Member>> {
        if self.role_or_404(group, actor).await?.is_none() {
            return Err(Error::PermissionDenied(format!(
                "you are not a member of group {group}"
            )));
        }
        self.ports.groups.members(group).await
    }
}
