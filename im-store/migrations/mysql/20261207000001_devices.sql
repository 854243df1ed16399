-- v1.2: push tokens of devices (notifications while offline) and each
-- user's notification settings.

-- One push token per (user, device label). A token is held by one device of
-- one user at a time (uk_push_devices_token): registering it elsewhere
-- moves it. `platform` is `fcm`, `apns` or `webhook`; tokens are printable
-- ASCII (at most 512 bytes, so the unique key fits InnoDB's 3072-byte limit).
CREATE TABLE IF NOT EXISTS push_devices (
    user_id       BIGINT UNSIGNED NOT NULL,
    device        VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    platform      VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    token         VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    registered_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device),
    UNIQUE KEY uk_push_devices_token (token)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Notification settings (a missing row: the defaults). `register` locks the
-- user's row, so concurrent registrations of one user take turns and the
-- bound of 20 devices holds.
CREATE TABLE IF NOT EXISTS notify_settings (
    user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    preview TINYINT(1) NOT NULL DEFAULT 1
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
