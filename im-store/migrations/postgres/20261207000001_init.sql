-- The im archive on PostgreSQL: the schema of the MySQL and SQLite
-- migrations up to v1.2 (people) in one migration.
-- Times are Unix milliseconds; ids and seqs are snowflakes / counters stored
-- as BIGINT holding the u64's 64 bits read as signed (ids at or above 2^63,
-- which snowflakes never reach, come back intact but sort negative: the
-- stores order by `id < 0, id`). Text that is compared or ordered uses the
-- "C" collation: byte order, case-sensitive, as on MySQL (`_bin`) and SQLite.

CREATE TABLE IF NOT EXISTS users (
    id            BIGINT PRIMARY KEY,
    username      VARCHAR(32) COLLATE "C" NOT NULL UNIQUE,
    password_hash VARCHAR(255) COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL,
    -- Profiles (NULL: not set). At most 64 characters / 1024 bytes (Logic checks).
    display_name  VARCHAR(64),
    avatar_url    VARCHAR(1024) COLLATE "C"
);

CREATE TABLE IF NOT EXISTS "groups" (
    id              BIGINT PRIMARY KEY,
    name            VARCHAR(128) NOT NULL,
    owner           BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    -- Muted until (Unix ms; NULL: not muted; 9223372036854775807: until unmuted).
    muted_until     BIGINT,
    -- Whether members added later see earlier history.
    history_visible BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE IF NOT EXISTS group_members (
    group_id    BIGINT NOT NULL REFERENCES "groups" (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL,
    role        VARCHAR(16) COLLATE "C" NOT NULL,
    muted_until BIGINT,
    -- The conversation's last seq when the member was added (0 for creators).
    joined_seq  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, user_id)
);

CREATE INDEX IF NOT EXISTS idx_group_members_user ON group_members (user_id);

CREATE TABLE IF NOT EXISTS messages (
    msg_id          BIGINT PRIMARY KEY,
    -- `u:<a>:<b>` or `g:<id>`.
    conversation_id VARCHAR(64) COLLATE "C" NOT NULL,
    seq             BIGINT NOT NULL,
    sender          BIGINT NOT NULL,
    -- `u:<id>` or `g:<id>`, as addressed.
    target          VARCHAR(32) COLLATE "C" NOT NULL,
    kind            VARCHAR(16) COLLATE "C" NOT NULL,
    -- The body's JSON text (`null` once recalled).
    body            TEXT NOT NULL,
    client_msg_id   VARCHAR(255) COLLATE "C" NOT NULL,
    ts              BIGINT NOT NULL,
    recalled        BOOLEAN NOT NULL DEFAULT FALSE,
    -- When the sender last edited the body (NULL: never), and whom the
    -- message mentions: JSON text, `"all"` or an array of ids (NULL: nobody).
    edited_at       BIGINT,
    mentions        TEXT COLLATE "C",
    -- Idempotency of (conversation, seq), and the history index.
    UNIQUE (conversation_id, seq)
);

-- The last recorded message of each conversation (the one with the highest
-- seq; `record` never moves it back), read from `messages` by
-- (conversation_id, last_seq).
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id VARCHAR(64) COLLATE "C" PRIMARY KEY,
    last_seq        BIGINT NOT NULL,
    last_msg_id     BIGINT NOT NULL,
    last_ts         BIGINT NOT NULL
);

-- Each user's conversations: the read cursor, and whether the conversation
-- is in the user's list (1:1 parties when recorded, group members on join;
-- a cursor may exist for an unlisted conversation). `list` reads one user's
-- rows by the primary key prefix.
CREATE TABLE IF NOT EXISTS user_conversations (
    user_id         BIGINT NOT NULL,
    conversation_id VARCHAR(64) COLLATE "C" NOT NULL,
    read_seq        BIGINT NOT NULL DEFAULT 0,
    listed          BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, conversation_id)
);

-- One push token per (user, device label). A token is held by one device of
-- one user at a time (UNIQUE token): registering it elsewhere moves it.
CREATE TABLE IF NOT EXISTS push_devices (
    user_id       BIGINT NOT NULL,
    device        VARCHAR(32) COLLATE "C" NOT NULL,
    platform      VARCHAR(16) COLLATE "C" NOT NULL,
    token         VARCHAR(512) COLLATE "C" NOT NULL UNIQUE,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device)
);

-- Notification settings (a missing row: the defaults). `register` locks the
-- user's row, so concurrent registrations of one user take turns.
CREATE TABLE IF NOT EXISTS notify_settings (
    user_id BIGINT PRIMARY KEY,
    preview BOOLEAN NOT NULL DEFAULT TRUE
);

-- The highest recorded seq of each conversation that mentions a user by id.
CREATE TABLE IF NOT EXISTS conversation_mentions (
    conversation_id VARCHAR(64) COLLATE "C" NOT NULL,
    user_id         BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- The latest `all` mention of each conversation and who sent it.
CREATE TABLE IF NOT EXISTS conversation_all_mentions (
    conversation_id VARCHAR(64) COLLATE "C" PRIMARY KEY,
    seq             BIGINT NOT NULL,
    sender          BIGINT NOT NULL
);

-- Contacts, stored in both directions (a user's list is a key prefix).
CREATE TABLE IF NOT EXISTS contacts (
    user_id    BIGINT NOT NULL,
    contact_id BIGINT NOT NULL,
    since      BIGINT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);

-- Pending requests of `from_id` to `to_id` (outgoing by the key, incoming by
-- idx_contact_requests_to), with an optional note of at most 200 characters.
CREATE TABLE IF NOT EXISTS contact_requests (
    from_id BIGINT NOT NULL,
    to_id   BIGINT NOT NULL,
    message VARCHAR(200),
    ts      BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id)
);

CREATE INDEX IF NOT EXISTS idx_contact_requests_to ON contact_requests (to_id, from_id);

-- `user_id` blocks `blocked_id` (one-way).
CREATE TABLE IF NOT EXISTS blocks (
    user_id    BIGINT NOT NULL,
    blocked_id BIGINT NOT NULL,
    since      BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
