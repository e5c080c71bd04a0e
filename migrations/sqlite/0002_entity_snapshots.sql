-- Snapshots move to a table of their own: SQLite rewrites a whole record on UPDATE, so with the
-- snapshot in the entity's row every version bump rewrote the snapshot too (overflow pages and
-- all). Here an action's write stays one narrow row.
CREATE TABLE entity_snapshots (
    entity_id INTEGER PRIMARY KEY REFERENCES entities (id),
    version   INTEGER NOT NULL CHECK (version >= 0),
    snapshot  TEXT    NOT NULL CHECK (json_valid(snapshot)),
    taken_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

INSERT INTO entity_snapshots (entity_id, version, snapshot)
SELECT id, snapshot_version, snapshot
FROM entities
WHERE snapshot IS NOT NULL AND snapshot_version IS NOT NULL;

ALTER TABLE entities DROP COLUMN snapshot;
ALTER TABLE entities DROP COLUMN snapshot_version;
