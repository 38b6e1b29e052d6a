-- pg_recall bench: in database "enabled", before recall.enable, a twin of
-- messages that is never enabled, for the interleaved runs (one pgbench run
-- mixing transactions on both tables, so that other load on the machine
-- hits both alike).  Same rows in the same physical order, same indexes,
-- no recall trigger or constraint.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;
CREATE TABLE messages_twin (LIKE messages INCLUDING DEFAULTS INCLUDING INDEXES);
INSERT INTO messages_twin SELECT * FROM messages ORDER BY id;
VACUUM (ANALYZE, FREEZE) messages_twin;
