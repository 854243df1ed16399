-- v1.2 people: profiles, history visibility and join cutoffs, edits and
-- mentions, contacts, contact requests and blocks.

-- Profiles (NULL: not set).
ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN avatar_url TEXT;

-- Whether members added later see earlier history; the conversation's last
-- seq when a member was added (0 for creators and pre-v1.2 members).
ALTER TABLE groups ADD COLUMN history_visible INTEGER NOT NULL DEFAULT 0;
ALTER TABLE group_members ADD COLUMN joined_seq INTEGER NOT NULL DEFAULT 0;

-- When the sender last edited the body (Unix ms; NULL: never), and whom the
-- message mentions: JSON text, `"all"` or an array of user ids (NULL: nobody).
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN mentions TEXT;

-- The highest recorded seq of each conversation that mentions a user by id.
CREATE TABLE IF NOT EXISTS conversation_mentions (
    conversation_id TEXT NOT NULL,
    user_id         INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;

-- The latest `all` mention of each conversation and who sent it (its sender
-- is not mentioned by it).
CREATE TABLE IF NOT EXISTS conversation_all_mentions (
    conversation_id TEXT PRIMARY KEY NOT NULL,
    seq             INTEGER NOT NULL,
    sender          INTEGER NOT NULL
) WITHOUT ROWID;

-- Contacts, stored in both directions (a user's list is a key prefix).
CREATE TABLE IF NOT EXISTS contacts (
    user_id    INTEGER NOT NULL,
    contact_id INTEGER NOT NULL,
    since      INTEGER NOT NULL,
    PRIMARY KEY (user_id, contact_id)
) WITHOUT ROWID;

-- Pending requests of `from_id` to `to_id` (outgoing by the key, incoming by
-- idx_contact_requests_to), with an optional note.
CREATE TABLE IF NOT EXISTS contact_requests (
    from_id INTEGER NOT NULL,
    to_id   INTEGER NOT NULL,
    message TEXT,
    ts      INTEGER NOT NULL,
    PRIMARY KEY (from_id, to_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idx_contact_requests_to ON contact_requests (to_id, from_id);

-- `user_id` blocks `blocked_id` (one-way).
CREATE TABLE IF NOT EXISTS blocks (
    user_id    INTEGER NOT NULL,
    blocked_id INTEGER NOT NULL,
    since      INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
) WITHOUT ROWID;
