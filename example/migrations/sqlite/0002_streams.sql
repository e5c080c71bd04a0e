-- Read models kept outside the actions' transactions (see the Postgres migration).
CREATE TABLE popular_item_entries (
    list_id INTEGER NOT NULL,
    item_id TEXT    NOT NULL,
    name    TEXT    NOT NULL,
    PRIMARY KEY (list_id, item_id)
);
CREATE INDEX popular_item_entries_name ON popular_item_entries (name, list_id);
CREATE TABLE popular_items (
    name  TEXT    PRIMARY KEY,
    lists INTEGER NOT NULL
);
CREATE INDEX popular_items_lists ON popular_items (lists DESC, name);
CREATE TABLE renamed_lists_outbox (
    log_position TEXT    PRIMARY KEY,
    list_id      INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    renamed_by   TEXT    NOT NULL,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
