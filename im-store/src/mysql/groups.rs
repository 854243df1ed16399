//! `MySqlGroupStore`: groups and members on MySQL (`` `groups` `` and
//! `group_members`; a group and its owner member are created in one
//! transaction, and the foreign key turns a member of an unknown group into
//! `NotFound`; deleting a group cascades to its members). An ownership
//! transfer is one transaction that locks the group row first.

use async_trait::async_trait;
use im_core::id::{GroupId, UserId};
use im_core::model::{Group, Member, Role};
use im_core::ports::GroupStore;
use im_core::{Error, Result};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::Row;

use super::{map_err, text};

/// Groups and their members on MySQL.
#[derive(Debug, Clone)]
pub struct MySqlGroupStore {
    pool: MySqlPool,
}

impl MySqlGroupStore {
    pub(crate) fn new(pool: MySqlPool) -> Self {
        MySqlGroupStore { pool }
    }
}

fn role(s: &str) -> Result<Role> {
    Role::parse(s).ok_or_else(|| Error::Backend {
        message: format!("corrupt role {s:?}"),
        source: None,
    })
}

fn not_member(group: GroupId, user: UserId) -> Error {
    Error::NotFound(format!("user {user} is not a member of group {group}"))
}

fn no_group(group: GroupId) -> Error {
    Error::NotFound(format!("no group {group}"))
}

/// A `group_members` row with `user_id`, `role`, `muted_until` and `joined_seq`.
fn member_row(r: &MySqlRow) -> Result<Member> {
    let user: u64 = r
        .try_get("user_id")
        .map_err(|e| map_err("read member", e))?;
    let s = text(r, "role").map_err(|e| map_err("read member", e))?;
    let muted_until: Option<i64> = r
        .try_get("muted_until")
        .map_err(|e| map_err("read member", e))?;
    let joined_seq: u64 = r
        .try_get("joined_seq")
        .map_err(|e| map_err("read member", e))?;
    Ok(Member {
        user_id: UserId(user),
        role: role(&s)?,
        muted_until,
        joined_seq,
    })
}

#[async_trait]
impl GroupStore for MySqlGroupStore {
    async fn create(&self, g: &Group) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        sqlx::query(
            "INSERT INTO `groups` (id, name, owner, created_at, muted_until, history_visible) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(g.id.0)
        .bind(&g.name)
        .bind(g.owner.0)
        .bind(g.created_at)
        .bind(g.muted_until)
        .bind(g.history_visible)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("create group", e))?;
        sqlx::query("INSERT INTO group_members (group_id, user_id, role) VALUES (?, ?, ?)")
            .bind(g.id.0)
            .bind(g.owner.0)
            .bind(Role::Owner.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("add group owner", e))?;
        tx.commit().await.map_err(|e| map_err("commit", e))
    }

    async fn get(&self, id: GroupId) -> Result<Option<Group>> {
        let row = sqlx::query(
            "SELECT id, name, owner, created_at, muted_until, history_visible FROM `groups` WHERE id = ?",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("get group", e))?;
        row.map(|r| -> std::result::Result<Group, sqlx::Error> {
            Ok(Group {
                id: GroupId(r.try_get("id")?),
                name: text(&r, "name")?,
                owner: UserId(r.try_get("owner")?),
                created_at: r.try_get("created_at")?,
                muted_until: r.try_get("muted_until")?,
                history_visible: r.try_get("history_visible")?,
            })
        })
        .transpose()
        .map_err(|e| map_err("read group", e))
    }

    async fn add_member(&self, group: GroupId, member: Member) -> Result<()> {
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, role, muted_until, joined_seq) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(group.0)
        .bind(member.user_id.0)
        .bind(member.role.as_str())
        .bind(member.muted_until)
        .bind(member.joined_seq)
        .execute(&self.pool)
        .await
        .map_err(|e| match map_err("add member", e) {
            Error::Conflict(_) => Error::Conflict(format!(
                "user {} is already a member of group {group}",
                member.user_id
            )),
            Error::NotFound(_) => no_group(group),
            other => other,
        })?;
        Ok(())
    }

    async fn remove_member(&self, group: GroupId, user: UserId) -> Result<()> {
        let n = sqlx::query("DELETE FROM group_members WHERE group_id = ? AND user_id = ?")
            .bind(group.0)
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("remove member", e))?
            .rows_affected();
        if n == 0 {
            return Err(not_member(group, user));
        }
        Ok(())
    }

    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        // Lock the row, so "not a member" and "already that role" are told apart.
        let present: Option<String> = sqlx::query_scalar(
            "SELECT role FROM group_members WHERE group_id = ? AND user_id = ? FOR UPDATE",
        )
        .bind(group.0)
        .bind(user.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map_err("set role", e))?;
        if present.is_none() {
            return Err(not_member(group, user));
        }
        sqlx::query("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?")
            .bind(role.as_str())
            .bind(group.0)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("set role", e))?;
        if role == Role::Owner {
            sqlx::query("UPDATE `groups` SET owner = ? WHERE id = ?")
                .bind(user.0)
                .bind(group.0)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("set owner", e))?;
        }
        tx.commit().await.map_err(|e| map_err("commit", e))
    }

    async fn role_of(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
        let r: Option<String> =
            sqlx::query_scalar("SELECT role FROM group_members WHERE group_id = ? AND user_id = ?")
                .bind(group.0)
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err("role of", e))?;
        r.as_deref().map(role).transpose()
    }

    async fn members(&self, group: GroupId) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT user_id, role, muted_until, joined_seq FROM group_members WHERE group_id = ? ORDER BY user_id",
        )
        .bind(group.0)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map_err("members", e))?;
        rows.iter().map(member_row).collect()
    }

    async fn member(&self, group: GroupId, user: UserId) -> Result<Option<Member>> {
        let row = sqlx::query(
            "SELECT user_id, role, muted_until, joined_seq FROM group_members WHERE group_id = ? AND user_id = ?",
        )
        .bind(group.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("member", e))?;
        row.as_ref().map(member_row).transpose()
    }

    // The connection reports matched rows (CLIENT_FOUND_ROWS), so an UPDATE
    // that sets a value already there still counts its row.
    async fn rename(&self, group: GroupId, name: &str) -> Result<()> {
        let n = sqlx::query("UPDATE `groups` SET name = ? WHERE id = ?")
            .bind(name)
            .bind(group.0)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("rename group", e))?
            .rows_affected();
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }

    async fn transfer(&self, group: GroupId, to: UserId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| map_err("begin", e))?;
        // Lock the group row first: concurrent transfers of one group queue up.
        let owner: Option<u64> =
            sqlx::query_scalar("SELECT owner FROM `groups` WHERE id = ? FOR UPDATE")
                .bind(group.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| map_err("transfer", e))?;
        let owner = owner.ok_or_else(|| no_group(group))?;
        let n = sqlx::query("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?")
            .bind(Role::Owner.as_str())
            .bind(group.0)
            .bind(to.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("transfer", e))?
            .rows_affected();
        if n == 0 {
            return Err(not_member(group, to));
        }
        if owner != to.0 {
            sqlx::query("UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?")
                .bind(Role::Admin.as_str())
                .bind(group.0)
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("transfer", e))?;
            sqlx::query("UPDATE `groups` SET owner = ? WHERE id = ?")
                .bind(to.0)
                .bind(group.0)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("transfer", e))?;
        }
        tx.commit().await.map_err(|e| map_err("commit", e))
    }

    async fn mute_group(&self, group: GroupId, until: Option<i64>) -> Result<()> {
        let n = sqlx::query("UPDATE `groups` SET muted_until = ? WHERE id = ?")
            .bind(until)
            .bind(group.0)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("mute group", e))?
            .rows_affected();
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }

    async fn mute_member(&self, group: GroupId, user: UserId, until: Option<i64>) -> Result<()> {
        let n = sqlx::query(
            "UPDATE group_members SET muted_until = ? WHERE group_id = ? AND user_id = ?",
        )
        .bind(until)
        .bind(group.0)
        .bind(user.0)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("mute member", e))?
        .rows_affected();
        if n == 0 {
            return Err(not_member(group, user));
        }
        Ok(())
    }

    async fn delete(&self, group: GroupId) -> Result<()> {
        // The foreign key's ON DELETE CASCADE removes the memberships.
        let n = sqlx::query("DELETE FROM `groups` WHERE id = ?")
            .bind(group.0)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("delete group", e))?
            .rows_affected();
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }

    async fn set_history_visible(&self, group: GroupId, visible: bool) -> Result<()> {
        let n = sqlx::query("UPDATE `groups` SET history_visible = ? WHERE id = ?")
            .bind(visible)
            .bind(group.0)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("set history visible", e))?
            .rows_affected();
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }
}
