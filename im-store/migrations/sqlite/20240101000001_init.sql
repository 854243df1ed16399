-- The im archive on SQLite: accounts, groups and messages.
-- Times are Unix milliseconds; ids are snowflakes stored as INTEGER (the
-- 64 bits of the u64, reinterpreted as signed).

CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY NOT NULL,
    -- SQLite compares TEXT bytewise (BINARY): usernames are case-sensitive.
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS groups (
    id         INTEGER PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    owner      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS group_members (
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL,
    role     TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idx_group_members_user ON group_members (user_id);

CREATE TABLE IF NOT EXISTS messages (
    msg_id          INTEGER PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    sender          INTEGER NOT NULL,
    target          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    client_msg_id   TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    recalled        INTEGER NOT NULL DEFAULT 0,
    -- Idempotency of (conversation, seq), and the history index.
    UNIQUE (conversation_id, seq)
);
