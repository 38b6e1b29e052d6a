--
-- actor_scope: recall.actor and recall.reason count only when set in the
-- recalling transaction (or at connection start) under the default
-- recall.actor_scope = 'transaction': behind a transaction-pooling pooler a
-- session-level SET outlives its client.  And a driver's untyped id resolves
-- recall.recall(regclass, text, ...).
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

CREATE TABLE scope_msgs (
    id      bigint PRIMARY KEY,
    sender  text NOT NULL,
    body    text
);
INSERT INTO scope_msgs SELECT i, CASE WHEN i <= 30 THEN 'grace' ELSE 'heidi' END, 'text ' || i
FROM generate_series(1, 40) i;
SELECT recall.enable('scope_msgs', '{body}', sender => 'sender');

-- one message's state and its events
CREATE FUNCTION scope_msg(i bigint) RETURNS TABLE (
    id bigint, body text, recalled boolean, recalled_by text, recall_reason text, events bigint)
LANGUAGE sql AS $$
    SELECT m.id, m.body, m.recalled_at IS NOT NULL, m.recalled_by, m.recall_reason,
           (SELECT count(*) FROM recall.events e
            WHERE e.tbl = 'scope_msgs'::regclass AND e.pk = jsonb_build_object('id', i))
    FROM scope_msgs m WHERE m.id = i
$$;

SHOW recall.actor_scope;

------------------------------------------------------------------------
-- set in the recalling transaction: counts
------------------------------------------------------------------------
-- SET LOCAL
BEGIN;
SET LOCAL recall.actor = 'grace';
SELECT recall.recall('scope_msgs', 1);
UPDATE scope_msgs SET recalled_at = now() WHERE id = 2;
COMMIT;
-- set_config(..., true)
BEGIN;
SELECT set_config('recall.actor', 'grace', true);
SELECT recall.recall('scope_msgs', 3);
COMMIT;
-- a plain SET inside the transaction
BEGIN;
SET recall.actor = 'grace';
SELECT recall.recall('scope_msgs', 4);
COMMIT;
-- set_config(..., false) inside the transaction
BEGIN;
SELECT set_config('recall.actor', 'grace', false);
SELECT recall.recall('scope_msgs', 5);
COMMIT;
SELECT * FROM scope_msg(1) UNION ALL SELECT * FROM scope_msg(2)
UNION ALL SELECT * FROM scope_msg(3) UNION ALL SELECT * FROM scope_msg(4)
UNION ALL SELECT * FROM scope_msg(5);

------------------------------------------------------------------------
-- left over from an earlier transaction: refused, nothing recalled
------------------------------------------------------------------------
-- the plain SET and set_config(..., false) above outlived their
-- transactions: the session value is still 'grace'
SHOW recall.actor;
SELECT recall.recall('scope_msgs', 6);
\echo :SQLSTATE
UPDATE scope_msgs SET recalled_at = now() WHERE id = 6;
\echo :SQLSTATE
-- a session-level SET of its own, then a recall in the next transaction
SET recall.actor = 'grace';
SELECT recall.recall('scope_msgs', 6);
\echo :SQLSTATE
BEGIN;
UPDATE scope_msgs SET recalled_at = now() WHERE id IN (6, 7);
\echo :SQLSTATE
ROLLBACK;
SELECT * FROM scope_msg(6) UNION ALL SELECT * FROM scope_msg(7);
-- a SET LOCAL over the session value is undone at commit: the session
-- value is left over again in the next transaction
BEGIN;
SET LOCAL recall.actor = 'grace';
COMMIT;
SELECT recall.recall('scope_msgs', 6);
\echo :SQLSTATE
-- so is a SET LOCAL undone by a rollback to its savepoint
BEGIN;
SAVEPOINT s;
SET LOCAL recall.actor = 'grace';
ROLLBACK TO SAVEPOINT s;
SELECT recall.recall('scope_msgs', 6);
\echo :SQLSTATE
ROLLBACK;
-- a SET LOCAL before the savepoint still counts after a rollback to it
BEGIN;
SET LOCAL recall.actor = 'grace';
SAVEPOINT s;
SET LOCAL recall.actor = 'heidi';
ROLLBACK TO SAVEPOINT s;
SELECT recall.recall('scope_msgs', 6);
COMMIT;
-- a function's SET clause is its own transaction's
CREATE FUNCTION pg_temp.recall_as_grace(i bigint) RETURNS boolean
LANGUAGE sql SET recall.actor = 'grace' AS $$ SELECT recall.recall('scope_msgs', i) $$;
SELECT pg_temp.recall_as_grace(7);
SELECT * FROM scope_msg(6) UNION ALL SELECT * FROM scope_msg(7);

------------------------------------------------------------------------
-- where the leftover is not used: the statement names the actor
------------------------------------------------------------------------
SELECT recall.recall('scope_msgs', 8, 'grace');
UPDATE scope_msgs SET recalled_at = now(), recalled_by = 'grace' WHERE id = 9;
SELECT * FROM scope_msg(8) UNION ALL SELECT * FROM scope_msg(9);
-- an empty value is no actor: session_user, as before (not the sender: an
-- admin recall without a reason; terse, the DETAIL names session_user)
\set VERBOSITY terse
SET recall.actor = '';
SELECT recall.recall('scope_msgs', 10);
\echo :SQLSTATE
RESET recall.actor;
SELECT recall.recall('scope_msgs', 10);
\echo :SQLSTATE
\set VERBOSITY default
SELECT * FROM scope_msg(10);

------------------------------------------------------------------------
-- recall.reason the same way (the superuser counts as recall_admin)
------------------------------------------------------------------------
SET recall.reason = 'spam';
-- an admin recall (heidi's message, actor 'mod') with the leftover reason
BEGIN;
SET LOCAL recall.actor = 'mod';
SELECT recall.recall('scope_msgs', 31);
\echo :SQLSTATE
ROLLBACK;
-- a self recall would store the leftover reason: refused too
BEGIN;
SET LOCAL recall.actor = 'grace';
UPDATE scope_msgs SET recalled_at = now() WHERE id = 11;
\echo :SQLSTATE
ROLLBACK;
SELECT * FROM scope_msg(11) UNION ALL SELECT * FROM scope_msg(31);
-- SET LOCAL, or the reason in the statement: counts
BEGIN;
SET LOCAL recall.actor = 'mod';
SET LOCAL recall.reason = 'abuse';
SELECT recall.recall('scope_msgs', 31);
COMMIT;
BEGIN;
SET LOCAL recall.actor = 'mod';
SELECT recall.recall('scope_msgs', 32, reason => 'abuse');
UPDATE scope_msgs SET recalled_at = now(), recall_reason = 'abuse' WHERE id = 33;
COMMIT;
SELECT recall.recall('scope_msgs', 34, 'mod', 'abuse');
SELECT * FROM scope_msg(31) UNION ALL SELECT * FROM scope_msg(32)
UNION ALL SELECT * FROM scope_msg(33) UNION ALL SELECT * FROM scope_msg(34);
RESET recall.reason;

------------------------------------------------------------------------
-- set by ALTER DATABASE ... SET: this connection's own setting, counts
------------------------------------------------------------------------
ALTER DATABASE :"DBNAME" SET recall.actor = 'grace';
\c
SELECT recall.recall('scope_msgs', 12);
SELECT source FROM pg_settings WHERE name = 'recall.actor';
-- a later session-level SET over it is left over again
SET recall.actor = 'grace';
SELECT recall.recall('scope_msgs', 13);
\echo :SQLSTATE
ALTER DATABASE :"DBNAME" RESET recall.actor;
SELECT * FROM scope_msg(12) UNION ALL SELECT * FROM scope_msg(13);

------------------------------------------------------------------------
-- a SET made before the library was loaded (on a fresh connection the
-- library loads at the first recall): re-applied at load, still left over
------------------------------------------------------------------------
\c
SET recall.actor = 'grace';
SELECT recall.recall('scope_msgs', 13);
\echo :SQLSTATE
\c
BEGIN;
SET recall.actor = 'grace';
SELECT recall.recall('scope_msgs', 13);
COMMIT;

------------------------------------------------------------------------
-- 'session': any value counts, as in 1.0
------------------------------------------------------------------------
SET recall.actor = 'grace';
SET recall.actor_scope = 'session';
SELECT recall.recall('scope_msgs', 14);
SET recall.reason = 'cleanup';
UPDATE scope_msgs SET recalled_at = now() WHERE id = 15;
SELECT * FROM scope_msg(14) UNION ALL SELECT * FROM scope_msg(15);
SET recall.actor_scope = 'statement';
\echo :SQLSTATE
RESET recall.actor_scope;
RESET recall.actor;
RESET recall.reason;

------------------------------------------------------------------------
-- under 'role', recall.actor is never the actor: a leftover that names
-- someone else is still an impersonation attempt (fail closed)
------------------------------------------------------------------------
CREATE TABLE scope_by_role (id int PRIMARY KEY, sender text NOT NULL, body text);
INSERT INTO scope_by_role VALUES (1, current_user, 'one'), (2, current_user, 'two');
SELECT recall.enable('scope_by_role', '{body}', sender => 'sender', actor_source => 'role');
SET recall.actor = 'grace';
\set VERBOSITY terse
UPDATE scope_by_role SET recalled_at = now() WHERE id = 1;
\echo :SQLSTATE
\set VERBOSITY default
SELECT set_config('recall.actor', current_user, false) = current_user;
UPDATE scope_by_role SET recalled_at = now() WHERE id = 2;
RESET recall.actor;
SELECT id, body, recalled_at IS NOT NULL AS recalled, recalled_by = current_user AS by_me
FROM scope_by_role ORDER BY id;

------------------------------------------------------------------------
-- untyped ids: an id of unknown type resolves recall.recall(regclass, text)
------------------------------------------------------------------------
SELECT p.oid::regprocedure FROM pg_proc p
WHERE p.proname = 'recall' AND p.pronamespace = 'recall'::regnamespace ORDER BY p.oid::regprocedure::text;
-- which function a call resolves to (EXPLAIN VERBOSE shows the arguments)
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', '16');
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', 16);
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', 16::bigint);
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', 16.0);
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', '16'::text);
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', '16'::varchar);
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', '{"id": 16}'::jsonb);
EXPLAIN (VERBOSE, COSTS OFF)
    SELECT recall.recall('scope_msgs', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid);
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall('scope_msgs', '16', 'grace', 'why');
EXPLAIN (VERBOSE, COSTS OFF) SELECT recall.recall(tbl => 'scope_msgs', id => '16', actor => 'grace');
-- a driver's statement: parameters of unspecified type (PREPARE without a
-- type list infers them, as the extended protocol does for a driver)
PREPARE drv AS SELECT recall.recall('scope_msgs', $1, $2, $3);
SELECT parameter_types FROM pg_prepared_statements WHERE name = 'drv';
EXECUTE drv('16', 'grace', NULL);
EXECUTE drv('16', 'grace', NULL);
EXECUTE drv('17', 'heidi', NULL);
\echo :SQLSTATE
EXECUTE drv('99', 'grace', NULL);
\echo :SQLSTATE
EXECUTE drv('x17', 'grace', NULL);
\echo :SQLSTATE
EXECUTE drv(NULL, 'grace', NULL);
\echo :SQLSTATE
DEALLOCATE drv;
SELECT * FROM scope_msg(16) UNION ALL SELECT * FROM scope_msg(17);
-- typed ids behave as before
SELECT recall.recall('scope_msgs', 17, 'grace');
SELECT recall.recall('scope_msgs', 18::bigint, 'grace');
SELECT recall.recall('scope_msgs', '19'::text, 'grace');
SELECT recall.recall('scope_msgs', '{"id": 20}'::jsonb, 'grace');
SELECT recall.recall('scope_msgs', '21'::jsonb, 'grace');
SELECT recall.recall('scope_msgs', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, 'grace');
\echo :SQLSTATE
SELECT recall.recall('scope_msgs', NULL, 'grace');
\echo :SQLSTATE
SELECT id, recalled_at IS NOT NULL AS recalled, recalled_by FROM scope_msgs
WHERE id BETWEEN 16 AND 21 ORDER BY id;

-- uuid and text keys, a composite key as JSON text
CREATE TABLE scope_uuid (id uuid PRIMARY KEY, sender text NOT NULL, body text);
INSERT INTO scope_uuid VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'grace', 'u1'),
                              ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 'grace', 'u2');
SELECT recall.enable('scope_uuid', '{body}', sender => 'sender');
SELECT recall.recall('scope_uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'grace');
SELECT recall.recall('scope_uuid', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'::uuid, 'grace');
SELECT recall.recall('scope_uuid', 'not-a-uuid', 'grace');
\echo :SQLSTATE
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM scope_uuid ORDER BY id;

CREATE TABLE scope_text (id text PRIMARY KEY, sender text NOT NULL, body text);
INSERT INTO scope_text VALUES ('m-1', 'grace', 't1'), ('m-2', 'grace', 't2'), ('{"id": 3}', 'grace', 't3');
SELECT recall.enable('scope_text', '{body}', sender => 'sender');
SELECT recall.recall('scope_text', 'm-1', 'grace');
SELECT recall.recall('scope_text', 'm-2'::text, 'grace');
-- a single text key is taken as is, even when it looks like JSON
SELECT recall.recall('scope_text', '{"id": 3}', 'grace');
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM scope_text ORDER BY id;

CREATE TABLE scope_pairs (room text, n int, sender text NOT NULL, body text,
                          PRIMARY KEY (room, n));
INSERT INTO scope_pairs VALUES ('r1', 1, 'grace', 'p1'), ('r1', 2, 'grace', 'p2'), ('r2', 1, 'grace', 'p3');
SELECT recall.enable('scope_pairs', '{body}', sender => 'sender');
SELECT recall.recall('scope_pairs', '{"room": "r1", "n": 1}', 'grace');
SELECT recall.recall('scope_pairs', '{"room": "r1", "n": 2}'::jsonb, 'grace');
SELECT recall.recall('scope_pairs', '{"room": "r2"}', 'grace');
\echo :SQLSTATE
SELECT recall.recall('scope_pairs', 'r2', 'grace');
\echo :SQLSTATE
SELECT recall.recall('scope_pairs', '{"room": "r9", "n": 1}', 'grace');
\echo :SQLSTATE
SELECT room, n, body, recalled_at IS NOT NULL AS recalled FROM scope_pairs ORDER BY room, n;

-- recall_sender takes untyped arguments as they are
PREPARE drv_sender AS SELECT recall.recall_sender($1, $2, $3, $4, $5);
SELECT parameter_types FROM pg_prepared_statements WHERE name = 'drv_sender';
-- a leftover actor is refused here too
SET recall.actor = 'mod';
EXECUTE drv_sender('scope_msgs', 'heidi', 'spam', NULL, NULL);
\echo :SQLSTATE
RESET recall.actor;
BEGIN;
SET LOCAL recall.actor = 'mod';
EXECUTE drv_sender('scope_msgs', 'heidi', 'spam', NULL, NULL);
COMMIT;
DEALLOCATE drv_sender;
SELECT count(*) FILTER (WHERE recalled_at IS NOT NULL) AS recalled,
       count(*) FILTER (WHERE recall_reason = 'spam') AS for_spam
FROM scope_msgs WHERE sender = 'heidi';

SELECT count(*) AS disabled FROM (SELECT recall.disable(t)
    FROM unnest('{scope_msgs,scope_by_role,scope_uuid,scope_text,scope_pairs}'::regclass[]) t) d;
DROP TABLE scope_msgs, scope_by_role, scope_uuid, scope_text, scope_pairs;
DROP FUNCTION scope_msg(bigint);
