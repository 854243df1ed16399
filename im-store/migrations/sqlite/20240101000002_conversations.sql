-- v1.1: group and member mutes, conversation lists with read cursors.

-- Muted until (Unix ms; NULL: not muted; 9223372036854775807: until unmuted).
ALTER TABLE groups ADD COLUMN muted_until INTEGER;
ALTER TABLE group_members ADD COLUMN muted_until INTEGER;

-- The last recorded message of each conversation (the one with the highest
-- seq; `record` never moves it back). The message itself is read from
-- `messages` by (conversation_id, last_seq).
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY NOT NULL,
    last_seq        INTEGER NOT NULL,
    last_msg_id     INTEGER NOT NULL,
    last_ts         INTEGER NOT NULL
) WITHOUT ROWID;

-- Each user's conversations: the read cursor, and whether the conversation
-- is in the user's list (1:1 parties when recorded, group members on join;
-- a cursor may exist for an unlisted conversation).
--
-- `list` reads one user's rows by the primary key prefix (WITHOUT ROWID:
-- the cursor and the flag come with it), the matching `conversations` rows
-- by their primary key, keeps the newest page (a top-N sort over the user's
-- conversations), then reads the page's last messages and counts its unread
-- messages on the messages' (conversation_id, seq) index.
CREATE TABLE IF NOT EXISTS user_conversations (
    user_id         INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    listed          INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
