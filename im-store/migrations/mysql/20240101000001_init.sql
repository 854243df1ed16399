-- The im archive on MySQL / MariaDB: accounts, groups and messages.
-- Times are Unix milliseconds; ids are snowflakes (BIGINT UNSIGNED).

CREATE TABLE IF NOT EXISTS users (
    id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    -- Binary collation: usernames are case-sensitive and unique as bytes.
    username      VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    password_hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE KEY uk_users_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS `groups` (
    id         BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    name       VARCHAR(128) CHARACTER SET utf8mb4 NOT NULL,
    owner      BIGINT UNSIGNED NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS group_members (
    group_id BIGINT UNSIGNED NOT NULL,
    user_id  BIGINT UNSIGNED NOT NULL,
    role     VARCHAR(16) CHARACTER SET ascii NOT NULL,
    PRIMARY KEY (group_id, user_id),
    KEY idx_group_members_user (user_id),
    CONSTRAINT fk_group_members_group FOREIGN KEY (group_id)
        REFERENCES `groups` (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS messages (
    msg_id          BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    -- `u:<a>:<b>` or `g:<id>`.
    conversation_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    seq             BIGINT UNSIGNED NOT NULL,
    sender          BIGINT UNSIGNED NOT NULL,
    -- `u:<id>` or `g:<id>`, as addressed.
    target          VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    kind            VARCHAR(16) CHARACTER SET ascii NOT NULL,
    -- The body's JSON text (`null` once recalled).
    body            MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    client_msg_id   VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    ts              BIGINT NOT NULL,
    recalled        TINYINT(1) NOT NULL DEFAULT 0,
    -- Idempotency of (conversation, seq), and the history index.
    UNIQUE KEY uk_messages_conversation_seq (conversation_id, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
