-- Durable subscriptions: where each named subscriber stands in the event log. A side-effect
-- subscriber moves its checkpoint after handling; a projector moves it in the transaction that
-- writes its read model, so the two never part. Every move names the checkpoint it replaces, so
-- a runtime that lost the subscription (or a rebuild that reset it) cannot move it by mistake.
CREATE TABLE entities.subscriptions (
    name           TEXT        PRIMARY KEY,
    -- The log position of the last event handled (`LogPosition`): the transaction id (xid8, as
    -- a number) and the event's position.
    transaction_id BIGINT      NOT NULL DEFAULT 0,
    position       BIGINT      NOT NULL DEFAULT 0,
    -- Why it stopped: its handler failed on the event after the checkpoint too many times.
    -- Cleared when that event is passed.
    error          TEXT,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
