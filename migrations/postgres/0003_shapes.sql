-- Schema evolution. Each event row records the version of its payload's shape (`#[event(version
-- = N)]`): a payload of an older shape is converted to the current one when it is loaded. Each
-- snapshot records a fingerprint of the state's shape: a snapshot of another shape is ignored and
-- the entity replayed from its events. Rows from before this migration are payload version 1,
-- and their snapshots carry no fingerprint (used when they still decode, as before).
ALTER TABLE entities.entity_events ADD COLUMN payload_version INTEGER NOT NULL DEFAULT 1 CHECK (payload_version >= 1);
ALTER TABLE entities.entity_snapshots ADD COLUMN shape TEXT;
