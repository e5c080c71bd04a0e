-- Read models kept outside the actions' transactions, by subscriptions to the event log.

-- Item popularity (the `popular_items` projector): which item names are on which lists...
CREATE TABLE popular_item_entries (
    list_id BIGINT NOT NULL,
    item_id TEXT   NOT NULL,
    name    TEXT   NOT NULL,
    PRIMARY KEY (list_id, item_id)
);
CREATE INDEX popular_item_entries_name ON popular_item_entries (name, list_id);
-- ...and, per name, on how many lists it is now.
CREATE TABLE popular_items (
    name  TEXT   PRIMARY KEY,
    lists BIGINT NOT NULL
);
CREATE INDEX popular_items_lists ON popular_items (lists DESC, name);

-- The outbox of renamed lists (the `renamed_lists_outbox` subscriber): one row per rename event,
-- keyed by its place in the log, so a redelivered event adds nothing. A mailer or webhook
-- sender would read and mark these rows.
CREATE TABLE renamed_lists_outbox (
    log_position TEXT        PRIMARY KEY,
    list_id      BIGINT      NOT NULL,
    name         TEXT        NOT NULL,
    renamed_by   TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
