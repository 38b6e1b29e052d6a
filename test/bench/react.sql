-- a non-recall UPDATE: a reaction count on a random message
\set n random(1, 1000000)
UPDATE messages SET reactions = reactions + 1 WHERE id = :n;
