-- Idempotency keys: a call made with a key stores it here, in the transaction that commits the
-- call, with what the call returned. A call with a key already here is not decided again. The
-- primary key scopes keys per user and is what holds across runtimes: a second insert of one key
-- waits for the first's transaction and then inserts nothing.
CREATE TABLE entities.idempotency_keys (
    user_id     TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    -- A hash of the call (and of the request, when the caller gave one): the same key with
    -- another call is refused.
    fingerprint TEXT        NOT NULL,
    -- What the call returned: the entity's type, id and version, or a transaction's value.
    outcome     JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
-- For the sweep that deletes keys older than the retention.
CREATE INDEX idempotency_keys_created_at ON entities.idempotency_keys (created_at);
