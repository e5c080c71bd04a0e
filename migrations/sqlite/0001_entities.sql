-- The same tables as on Postgres: SQLite has no schemas, JSON is stored as text, and
-- timestamps as ISO-8601 text in UTC.
CREATE TABLE entities (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    type             TEXT    NOT NULL,
    version          INTEGER NOT NULL CHECK (version >= 0),
    snapshot         TEXT,
    snapshot_version INTEGER CHECK (snapshot_version >= 0 AND snapshot_version <= version),
    inserted_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE entity_actions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id      INTEGER NOT NULL REFERENCES entities (id),
    entity_type    TEXT    NOT NULL,
    entity_version INTEGER NOT NULL CHECK (entity_version >= 1),
    type           TEXT    NOT NULL,
    payload        TEXT    NOT NULL CHECK (json_valid(payload)),
    created_by     TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    inserted_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX entity_actions_entity_version ON entity_actions (entity_id, entity_version);

CREATE TABLE entity_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SQLite commits one writer at a time, so the row id is already the global commit order.
    position       INTEGER GENERATED ALWAYS AS (id) VIRTUAL,
    entity_id      INTEGER NOT NULL REFERENCES entities (id),
    entity_type    TEXT    NOT NULL,
    entity_version INTEGER NOT NULL CHECK (entity_version >= 1),
    type           TEXT    NOT NULL,
    payload        TEXT    NOT NULL CHECK (json_valid(payload)),
    action_id      INTEGER NOT NULL REFERENCES entity_actions (id),
    created_by     TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    inserted_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT entity_events_entity_version UNIQUE (entity_id, entity_version)
);
