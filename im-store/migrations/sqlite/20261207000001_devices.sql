-- v1.2: push tokens of devices (notifications while offline) and each
-- user's notification settings.

-- One push token per (user, device label). A token is held by one device of
-- one user at a time (UNIQUE token): registering it elsewhere moves it.
-- `platform` is `fcm`, `apns` or `webhook`.
CREATE TABLE IF NOT EXISTS push_devices (
    user_id       INTEGER NOT NULL,
    device        TEXT NOT NULL,
    platform      TEXT NOT NULL,
    token         TEXT NOT NULL UNIQUE,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device)
) WITHOUT ROWID;

-- Notification settings (a missing row: the defaults).
CREATE TABLE IF NOT EXISTS notify_settings (
    user_id INTEGER PRIMARY KEY NOT NULL,
    preview INTEGER NOT NULL DEFAULT 1
);
