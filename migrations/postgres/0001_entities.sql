-- The seed's schema (`entities`), extended with request/correlation ids and a global event order.
CREATE SCHEMA IF NOT EXISTS entities;

CREATE TABLE entities.entities (
    id               BIGSERIAL PRIMARY KEY,
    type             TEXT        NOT NULL,
    -- Number of events recorded; every write checks it (optimistic concurrency).
    version          BIGINT      NOT NULL CHECK (version >= 0),
    snapshot         JSONB,
    snapshot_version BIGINT      CHECK (snapshot_version >= 0 AND snapshot_version <= version),
    inserted_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which action caused which events: kept for debugging and audit.
CREATE TABLE entities.entity_actions (
    id             BIGSERIAL PRIMARY KEY,
    entity_id      BIGINT      NOT NULL REFERENCES entities.entities (id),
    entity_type    TEXT        NOT NULL,
    -- The entity's version after this action's last event: its events are the versions
    -- after the previous action's, up to this one.
    entity_version BIGINT      NOT NULL CHECK (entity_version >= 1),
    type           TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    created_by     TEXT        NOT NULL,
    request_id     TEXT        NOT NULL,
    correlation_id TEXT        NOT NULL,
    inserted_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX entity_actions_entity_version ON entities.entity_actions (entity_id, entity_version);

CREATE TABLE entities.entity_events (
    id             BIGSERIAL PRIMARY KEY,
    -- Global order of events, for the eventually consistent read models to come. Allocation
    -- order is not commit order: with `transaction_id` a reader can wait out transactions still
    -- in flight (`pg_snapshot_xmin`) instead of skipping their positions for ever.
    position       BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    transaction_id XID8        NOT NULL DEFAULT pg_current_xact_id(),
    entity_id      BIGINT      NOT NULL REFERENCES entities.entities (id),
    entity_type    TEXT        NOT NULL,
    -- The entity's version after this event: 1 for its first event.
    entity_version BIGINT      NOT NULL CHECK (entity_version >= 1),
    type           TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    action_id      BIGINT      NOT NULL REFERENCES entities.entity_actions (id),
    created_by     TEXT        NOT NULL,
    request_id     TEXT        NOT NULL,
    correlation_id TEXT        NOT NULL,
    inserted_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT entity_events_entity_version UNIQUE (entity_id, entity_version)
);
