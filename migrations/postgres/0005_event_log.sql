-- The event log is read in (transaction_id, position) order, below the oldest transaction still
-- in flight (see the runtime's `log` module): this index serves that order.
CREATE INDEX entity_events_log ON entities.entity_events (transaction_id, position);
