-- v1.1: group and member mutes, conversation lists with read cursors.

-- Muted until (Unix ms; NULL: not muted; 9223372036854775807: until unmuted).
ALTER TABLE `groups` ADD COLUMN muted_until BIGINT NULL;
ALTER TABLE group_members ADD COLUMN muted_until BIGINT NULL;

-- The last recorded message of each conversation (the one with the highest
-- seq; `record` never moves it back). The message itself is read from
-- `messages` by (conversation_id, last_seq).
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    last_seq        BIGINT UNSIGNED NOT NULL,
    last_msg_id     BIGINT UNSIGNED NOT NULL,
    last_ts         BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Each user's conversations: the read cursor, and whether the conversation
-- is in the user's list (1:1 parties when recorded, group members on join;
-- a cursor may exist for an unlisted conversation).
--
-- `list` reads one user's rows by the primary key prefix (clustered: the
-- cursor and the flag come with it), the matching `conversations` rows by
-- their primary key, keeps the newest page (a top-N sort over the user's
-- conversations, thousands at most), then reads the page's last messages
-- and counts its unread messages on `messages`' (conversation_id, seq) key.
-- Keeping the list order here instead would cost a write per member for
-- every group message.
CREATE TABLE IF NOT EXISTS user_conversations (
    user_id         BIGINT UNSIGNED NOT NULL,
    conversation_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    read_seq        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    listed          TINYINT(1) NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, conversation_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
