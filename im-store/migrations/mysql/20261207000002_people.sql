-- v1.2 people: profiles, history visibility and join cutoffs, edits and
-- mentions, contacts, contact requests and blocks.

-- Profiles (NULL: not set). At most 64 characters / 1024 bytes (Logic checks).
ALTER TABLE users ADD COLUMN display_name VARCHAR(64) CHARACTER SET utf8mb4 NULL;
ALTER TABLE users ADD COLUMN avatar_url VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

-- Whether members added later see earlier history; the conversation's last
-- seq when a member was added (0 for creators and pre-v1.2 members).
ALTER TABLE `groups` ADD COLUMN history_visible TINYINT(1) NOT NULL DEFAULT 0;
ALTER TABLE group_members ADD COLUMN joined_seq BIGINT UNSIGNED NOT NULL DEFAULT 0;

-- When the sender last edited the body (Unix ms; NULL: never), and whom the
-- message mentions: JSON text, `"all"` or an array of user ids (NULL: nobody).
ALTER TABLE messages ADD COLUMN edited_at BIGINT NULL;
ALTER TABLE messages ADD COLUMN mentions TEXT CHARACTER SET ascii COLLATE ascii_bin NULL;

-- The highest recorded seq of each conversation that mentions a user by id
-- (`mention_seqs` reads a user's rows of a page of conversations by key).
CREATE TABLE IF NOT EXISTS conversation_mentions (
    conversation_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id         BIGINT UNSIGNED NOT NULL,
    seq             BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The latest `all` mention of each conversation and who sent it (its sender
-- is not mentioned by it).
CREATE TABLE IF NOT EXISTS conversation_all_mentions (
    conversation_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    seq             BIGINT UNSIGNED NOT NULL,
    sender          BIGINT UNSIGNED NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Contacts, stored in both directions (a user's list is a key prefix).
CREATE TABLE IF NOT EXISTS contacts (
    user_id    BIGINT UNSIGNED NOT NULL,
    contact_id BIGINT UNSIGNED NOT NULL,
    since      BIGINT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Pending requests of `from_id` to `to_id` (outgoing by the key, incoming by
-- idx_contact_requests_to), with an optional note of at most 200 characters.
CREATE TABLE IF NOT EXISTS contact_requests (
    from_id BIGINT UNSIGNED NOT NULL,
    to_id   BIGINT UNSIGNED NOT NULL,
    message VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    ts      BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id),
    KEY idx_contact_requests_to (to_id, from_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- `user_id` blocks `blocked_id` (one-way).
CREATE TABLE IF NOT EXISTS blocks (
    user_id    BIGINT UNSIGNED NOT NULL,
    blocked_id BIGINT UNSIGNED NOT NULL,
    since      BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
