-- Snapshots move to a table of their own. In the entity's row, every version bump rewrote the
-- snapshot with it (inline while it compresses under ~2 KB), and writing a snapshot locked the
-- row every action's version check updates. Here an action's write stays one narrow row, and a
-- snapshot is written beside the entity's writes instead of in their way.
CREATE TABLE entities.entity_snapshots (
    entity_id BIGINT      PRIMARY KEY REFERENCES entities.entities (id),
    -- The entity's version the snapshot is the state at.
    version   BIGINT      NOT NULL CHECK (version >= 0),
    snapshot  JSONB       NOT NULL,
    taken_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO entities.entity_snapshots (entity_id, version, snapshot)
SELECT id, snapshot_version, snapshot
FROM entities.entities
WHERE snapshot IS NOT NULL AND snapshot_version IS NOT NULL;

ALTER TABLE entities.entities DROP COLUMN snapshot, DROP COLUMN snapshot_version;
