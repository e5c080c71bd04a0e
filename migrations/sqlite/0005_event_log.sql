-- SQLite reads the event log in `position` order (its row id): the primary key serves it. Kept
-- as a migration of its own so both backends share the version numbers.
SELECT 1;
