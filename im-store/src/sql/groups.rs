//! [`SqlGroupStore`]: groups and members (`groups` and `group_members`; a
//! group and its owner member are created in one transaction, and the
//! foreign key turns a member of an unknown group into `NotFound`; deleting
//! a group cascades to its members). Role changes and ownership transfers
//! are one transaction that locks the row it reads first (`FOR UPDATE`; on
//! SQLite a transfer writes first, so it holds the database's write lock
//! before it reads the old owner).

use async_trait::async_trait;
use im_core::id::{GroupId, UserId};
use im_core::model::{Group, Member, Role};
use im_core::ports::GroupStore;
use im_core::{Error, Result};

use super::db::{fail, store};
use super::engine::{Dialect, Engine};

store! {
    /// Groups and their members on any SQL engine.
    SqlGroupStore
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

/// The `groups` table, quoted (a keyword on MySQL 8).
fn groups(d: Dialect) -> String {
    d.quote("groups")
}

/// A `group_members` row with `user_id`, `role`, `muted_until` and `joined_seq`.
fn member_row<E: Engine>(r: &E::Row) -> Result<Member> {
    let read = || -> std::result::Result<_, sqlx::Error> {
        Ok((
            E::u64(r, "user_id")?,
            E::text(r, "role")?,
            E::opt_i64(r, "muted_until")?,
            E::u64(r, "joined_seq")?,
        ))
    };
    let (user, s, muted_until, joined_seq) = read().map_err(fail::<E>("read member"))?;
    Ok(Member {
        user_id: UserId(user),
        role: role(&s)?,
        muted_until,
        joined_seq,
    })
}

const MEMBER: &str = "SELECT user_id, role, muted_until, joined_seq FROM group_members";

#[async_trait]
impl<E: Engine> GroupStore for SqlGroupStore<E> {
    async fn create(&self, g: &Group) -> Result<()> {
        let d = E::DIALECT;
        let mut tx = self.db.begin().await?;
        tx.execute(
            "create group",
            &format!(
                "INSERT INTO {} (id, name, owner, created_at, muted_until, history_visible) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                groups(d)
            ),
            vec![
                d.id(g.id.0),
                (&g.name).into(),
                d.id(g.owner.0),
                g.created_at.into(),
                g.muted_until.into(),
                g.history_visible.into(),
            ],
        )
        .await?;
        tx.execute(
            "add group owner",
            "INSERT INTO group_members (group_id, user_id, role) VALUES (?, ?, ?)",
            vec![d.id(g.id.0), d.id(g.owner.0), Role::Owner.as_str().into()],
        )
        .await?;
        tx.commit().await
    }

    async fn get(&self, id: GroupId) -> Result<Option<Group>> {
        let d = E::DIALECT;
        let sql = format!(
            "SELECT id, name, owner, created_at, muted_until, history_visible FROM {} WHERE id = ?",
            groups(d)
        );
        let row = self
            .db
            .fetch_optional("get group", &sql, vec![d.id(id.0)])
            .await?;
        row.map(|r| -> std::result::Result<Group, sqlx::Error> {
            Ok(Group {
                id: GroupId(E::u64(&r, "id")?),
                name: E::text(&r, "name")?,
                owner: UserId(E::u64(&r, "owner")?),
                created_at: E::i64(&r, "created_at")?,
                muted_until: E::opt_i64(&r, "muted_until")?,
                history_visible: E::bool(&r, "history_visible")?,
            })
        })
        .transpose()
        .map_err(fail::<E>("read group"))
    }

    async fn add_member(&self, group: GroupId, member: Member) -> Result<()> {
        let d = E::DIALECT;
        self.db
            .execute(
                "add member",
                "INSERT INTO group_members (group_id, user_id, role, muted_until, joined_seq) \
                 VALUES (?, ?, ?, ?, ?)",
                vec![
                    d.id(group.0),
                    d.id(member.user_id.0),
                    member.role.as_str().into(),
                    member.muted_until.into(),
                    d.seq(member.joined_seq)?,
                ],
            )
            .await
            .map_err(|e| match e {
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
        let d = E::DIALECT;
        let n = self
            .db
            .execute(
                "remove member",
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                vec![d.id(group.0), d.id(user.0)],
            )
            .await?;
        if n == 0 {
            return Err(not_member(group, user));
        }
        Ok(())
    }

    async fn set_role(&self, group: GroupId, user: UserId, role: Role) -> Result<()> {
        let d = E::DIALECT;
        let mut tx = self.db.begin().await?;
        // Lock the row, so "not a member" and "already that role" are told apart.
        let sql = format!(
            "SELECT role FROM group_members WHERE group_id = ? AND user_id = ?{}",
            d.for_update()
        );
        let present = tx
            .fetch_optional("set role", &sql, vec![d.id(group.0), d.id(user.0)])
            .await?;
        if present.is_none() {
            return Err(not_member(group, user));
        }
        tx.execute(
            "set role",
            "UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?",
            vec![role.as_str().into(), d.id(group.0), d.id(user.0)],
        )
        .await?;
        if role == Role::Owner {
            tx.execute(
                "set owner",
                &format!("UPDATE {} SET owner = ? WHERE id = ?", groups(d)),
                vec![d.id(user.0), d.id(group.0)],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn role_of(&self, group: GroupId, user: UserId) -> Result<Option<Role>> {
        let d = E::DIALECT;
        let row = self
            .db
            .fetch_optional(
                "role of",
                "SELECT role FROM group_members WHERE group_id = ? AND user_id = ?",
                vec![d.id(group.0), d.id(user.0)],
            )
            .await?;
        match row {
            None => Ok(None),
            Some(r) => role(&E::text(&r, "role").map_err(fail::<E>("role of"))?).map(Some),
        }
    }

    async fn members(&self, group: GroupId) -> Result<Vec<Member>> {
        let d = E::DIALECT;
        let sql = format!(
            "{MEMBER} WHERE group_id = ? ORDER BY {}",
            d.id_order("user_id")
        );
        let rows = self
            .db
            .fetch_all("members", &sql, vec![d.id(group.0)])
            .await?;
        rows.iter().map(member_row::<E>).collect()
    }

    async fn member(&self, group: GroupId, user: UserId) -> Result<Option<Member>> {
        let d = E::DIALECT;
        let sql = format!("{MEMBER} WHERE group_id = ? AND user_id = ?");
        let row = self
            .db
            .fetch_optional("member", &sql, vec![d.id(group.0), d.id(user.0)])
            .await?;
        row.as_ref().map(member_row::<E>).transpose()
    }

    // UPDATEs count matched rows (MySQL: CLIENT_FOUND_ROWS), so one that
    // sets a value already there still counts its row.
    async fn rename(&self, group: GroupId, name: &str) -> Result<()> {
        let d = E::DIALECT;
        let sql = format!("UPDATE {} SET name = ? WHERE id = ?", groups(d));
        let n = self
            .db
            .execute("rename group", &sql, vec![name.into(), d.id(group.0)])
            .await?;
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }

    async fn transfer(&self, group: GroupId, to: UserId) -> Result<()> {
        let d = E::DIALECT;
        let what = "transfer";
        let mut tx = self.db.begin().await?;
        let set_role = "UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?";
        let promote = vec![Role::Owner.as_str().into(), d.id(group.0), d.id(to.0)];
        // SQLite: a write first, so the transaction holds the write lock
        // before it reads the old owner.
        let early = if d == Dialect::Sqlite {
            Some(tx.execute(what, set_role, promote.clone()).await?)
        } else {
            None
        };
        // Elsewhere, lock the group row first: concurrent transfers of one
        // group queue up.
        let sql = format!(
            "SELECT owner FROM {} WHERE id = ?{}",
            groups(d),
            d.for_update()
        );
        let row = tx.fetch_optional(what, &sql, vec![d.id(group.0)]).await?;
        let owner = match row {
            Some(r) => E::u64(&r, "owner").map_err(fail::<E>(what))?,
            None => return Err(no_group(group)),
        };
        let n = match early {
            Some(n) => n,
            None => tx.execute(what, set_role, promote).await?,
        };
        if n == 0 {
            return Err(not_member(group, to));
        }
        if owner != to.0 {
            tx.execute(
                what,
                set_role,
                vec![Role::Admin.as_str().into(), d.id(group.0), d.id(owner)],
            )
            .await?;
            tx.execute(
                what,
                &format!("UPDATE {} SET owner = ? WHERE id = ?", groups(d)),
                vec![d.id(to.0), d.id(group.0)],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn mute_group(&self, group: GroupId, until: Option<i64>) -> Result<()> {
        let d = E::DIALECT;
        let sql = format!("UPDATE {} SET muted_until = ? WHERE id = ?", groups(d));
        let n = self
            .db
            .execute("mute group", &sql, vec![until.into(), d.id(group.0)])
            .await?;
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }

    async fn mute_member(&self, group: GroupId, user: UserId, until: Option<i64>) -> Result<()> {
        let d = E::DIALECT;
        let n = self
            .db
            .execute(
                "mute member",
                "UPDATE group_members SET muted_until = ? WHERE group_id = ? AND user_id = ?",
                vec![until.into(), d.id(group.0), d.id(user.0)],
            )
            .await?;
        if n == 0 {
            return Err(not_member(group, user));
        }
        Ok(())
    }

    async fn delete(&self, group: GroupId) -> Result<()> {
        let d = E::DIALECT;
        // The foreign key's ON DELETE CASCADE removes the memberships.
        let sql = format!("DELETE FROM {} WHERE id = ?", groups(d));
        let n = self
            .db
            .execute("delete group", &sql, vec![d.id(group.0)])
            .await?;
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }

    async fn set_history_visible(&self, group: GroupId, visible: bool) -> Result<()> {
        let d = E::DIALECT;
        let sql = format!("UPDATE {} SET history_visible = ? WHERE id = ?", groups(d));
        let n = self
            .db
            .execute(
                "set history visible",
                &sql,
                vec![visible.into(), d.id(group.0)],
            )
            .await?;
        if n == 0 {
            return Err(no_group(group));
        }
        Ok(())
    }
}
