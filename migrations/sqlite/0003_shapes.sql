-- Schema evolution; see the Postgres migration of the same number.
ALTER TABLE entity_events ADD COLUMN payload_version INTEGER NOT NULL DEFAULT 1 CHECK (payload_version >= 1);
ALTER TABLE entity_snapshots ADD COLUMN shape TEXT;
