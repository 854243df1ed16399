//! [`SqlUserStore`]: user accounts (`users`). Usernames are unique and
//! case-sensitive, compared and ordered as bytes: a binary collation on
//! MySQL (`utf8mb4_bin`), SQLite's BINARY, `COLLATE "C"` on PostgreSQL.

use async_trait::async_trait;
use im_core::id::UserId;
use im_core::model::User;
use im_core::ports::UserStore;
use im_core::{Error, Result};

use super::db::{fail, store};
use super::engine::{Arg, Dialect, Engine};
use super::{chunks, padded, placeholders};

const SELECT: &str =
    "SELECT id, username, password_hash, created_at, display_name, avatar_url FROM users";

store! {
    /// User accounts on any SQL engine.
    SqlUserStore
}

fn user<E: Engine>(r: &E::Row) -> Result<User> {
    let f = || -> std::result::Result<User, sqlx::Error> {
        Ok(User {
            id: UserId(E::u64(r, "id")?),
            username: E::text(r, "username")?,
            password_hash: E::text(r, "password_hash")?,
            created_at: E::i64(r, "created_at")?,
            display_name: E::opt_text(r, "display_name")?,
            avatar_url: E::opt_text(r, "avatar_url")?,
        })
    };
    f().map_err(fail::<E>("read user"))
}

/// The `WHERE` test of a username prefix, and its pattern.
fn prefix_match(d: Dialect, prefix: &str) -> (&'static str, String) {
    match d {
        // GLOB is case-sensitive (LIKE is not, for ASCII), and TEXT compares
        // bytewise, so a literal prefix makes GLOB a range scan of the unique
        // index. GLOB's wildcards (`*`, `?`, `[`) match themselves in brackets.
        Dialect::Sqlite => {
            let mut pattern = String::with_capacity(prefix.len() + 4);
            for ch in prefix.chars() {
                match ch {
                    '*' | '?' | '[' => {
                        pattern.push('[');
                        pattern.push(ch);
                        pattern.push(']');
                    }
                    _ => pattern.push(ch),
                }
            }
            pattern.push('*');
            ("username GLOB ?", pattern)
        }
        // A binary collation: LIKE compares case-sensitively, `>` and ORDER
        // BY by code point (UTF-8 byte order); a constant prefix makes LIKE a
        // range scan of the unique key.
        Dialect::MySql | Dialect::Postgres => (
            "username LIKE ? ESCAPE '!'",
            format!(
                "{}%",
                prefix
                    .replace('!', "!!")
                    .replace('%', "!%")
                    .replace('_', "!_")
            ),
        ),
    }
}

#[async_trait]
impl<E: Engine> UserStore for SqlUserStore<E> {
    async fn create(&self, u: &User) -> Result<()> {
        if u.username.chars().count() > 32 {
            return Err(Error::InvalidArgument(
                "username longer than 32 characters".into(),
            ));
        }
        let d = E::DIALECT;
        self.db
            .execute(
                "create user",
                "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)",
                vec![
                    d.id(u.id.0),
                    (&u.username).into(),
                    (&u.password_hash).into(),
                    u.created_at.into(),
                ],
            )
            .await
            .map_err(|e| match e {
                Error::Conflict(_) => {
                    Error::Conflict(format!("username {:?} is taken", u.username))
                }
                other => other,
            })?;
        Ok(())
    }

    async fn get(&self, id: UserId) -> Result<Option<User>> {
        let sql = format!("{SELECT} WHERE id = ?");
        let row = self
            .db
            .fetch_optional("get user", &sql, vec![E::DIALECT.id(id.0)])
            .await?;
        row.as_ref().map(user::<E>).transpose()
    }

    async fn by_username(&self, username: &str) -> Result<Option<User>> {
        let sql = format!("{SELECT} WHERE username = ?");
        let row = self
            .db
            .fetch_optional("get user", &sql, vec![username.into()])
            .await?;
        row.as_ref().map(user::<E>).transpose()
    }

    async fn existing(&self, ids: &[UserId]) -> Result<Vec<UserId>> {
        let mut found = Vec::new();
        for (start, len, shape) in chunks(ids.len()) {
            // Padded with the last id, so each statement has one of few shapes.
            let sql = format!("SELECT id FROM users WHERE id IN ({})", placeholders(shape));
            let args = padded(start, len, shape)
                .map(|i| E::DIALECT.id(ids[i].0))
                .collect();
            let rows = self.db.fetch_all("existing users", &sql, args).await?;
            for r in &rows {
                found.push(UserId(
                    E::u64(r, "id").map_err(fail::<E>("existing users"))?,
                ));
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    async fn get_many(&self, ids: &[UserId]) -> Result<Vec<User>> {
        let mut found = Vec::new();
        for (start, len, shape) in chunks(ids.len()) {
            // Padded with the last id, so each statement has one of few shapes.
            let sql = format!("{SELECT} WHERE id IN ({})", placeholders(shape));
            let args = padded(start, len, shape)
                .map(|i| E::DIALECT.id(ids[i].0))
                .collect();
            for r in &self.db.fetch_all("get users", &sql, args).await? {
                found.push(user::<E>(r)?);
            }
        }
        found.sort_unstable_by_key(|u| u.id);
        found.dedup_by_key(|u| u.id);
        Ok(found)
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<()> {
        // Matched rows count (MySQL: CLIENT_FOUND_ROWS), so setting the same
        // profile again is a match.
        let n = self
            .db
            .execute(
                "set profile",
                "UPDATE users SET display_name = ?, avatar_url = ? WHERE id = ?",
                vec![display_name.into(), avatar_url.into(), E::DIALECT.id(id.0)],
            )
            .await?;
        if n == 0 {
            return Err(Error::NotFound(format!("no user {id}")));
        }
        Ok(())
    }

    async fn search(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<User>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let d = E::DIALECT;
        let (test, pattern) = prefix_match(d, prefix);
        let mut args: Vec<Arg<'_>> = vec![Arg::Text(&pattern)];
        let after_test = match after {
            Some(a) => {
                args.push(a.into());
                "AND username > ?"
            }
            None => "",
        };
        args.push(d.limit(limit));
        let sql = format!("{SELECT} WHERE {test} {after_test} ORDER BY username LIMIT ?");
        let rows = self.db.fetch_all("search users", &sql, args).await?;
        rows.iter().map(user::<E>).collect()
    }
}
