-- interleaved baseline of react.sql: the same non-recall UPDATE on the twin
\set n random(1, 1000000)
UPDATE messages_twin SET reactions = reactions + 1 WHERE id = :n;
