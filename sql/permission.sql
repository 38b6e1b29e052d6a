--
-- permission: who may recall what, under the default actor source
-- ('statement': the application names its end user).
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;
SET TIME ZONE 'UTC';
SET DateStyle = 'ISO, YMD';
-- these scenarios SET recall.actor for the session; actor_scope.sql tests
-- the default scope, 'transaction'
SET recall.actor_scope = 'session';

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_perm_app;
DROP ROLE IF EXISTS regress_perm_admin;
DROP ROLE IF EXISTS regress_perm_auditor;
DROP ROLE IF EXISTS regress_perm_reader;
RESET client_min_messages;
-- the application's role: rights on its table only, none on recall.*
CREATE ROLE regress_perm_app;
CREATE ROLE regress_perm_admin IN ROLE recall_admin;
CREATE ROLE regress_perm_auditor IN ROLE recall_auditor;
CREATE ROLE regress_perm_reader;

CREATE TABLE msgs (
    id       int PRIMARY KEY,
    sender   text NOT NULL,
    sent_at  timestamptz NOT NULL,
    body     text
);
INSERT INTO msgs VALUES
    (1, 'alice', now() - interval '10 minutes', 'alice fresh'),
    (2, 'alice', '2000-01-01 00:00:00+00', 'alice old'),
    (3, 'bob', now(), 'bob 3'),
    (4, 'bob', now(), 'bob 4'),
    (5, 'bob', now(), 'bob 5'),
    (6, 'carol', now(), 'carol 6'),
    (7, session_user, now(), 'from the session user'),
    (8, 'carol', now(), 'carol 8'),
    (9, 'carol', now(), 'carol 9'),
    (10, 'mod', now(), 'mod fresh'),
    (11, 'mod', '2000-01-01 00:00:00+00', 'mod old'),
    (12, 'carol', now(), 'carol 12'),
    (13, 'carol', now(), 'carol 13'),
    (14, 'dave', now(), 'dave 14'),
    (15, 'dave', now(), 'dave 15');
SELECT recall.enable('msgs', '{body}', sender => 'sender', sent_at => 'sent_at',
                     recall_window => '1 hour');
GRANT SELECT, INSERT, UPDATE ON msgs TO regress_perm_app;
GRANT SELECT, UPDATE ON msgs TO regress_perm_admin;
GRANT SELECT ON msgs TO regress_perm_reader;

-- state of one message, without the moving parts
CREATE FUNCTION pg_temp.msg(i int) RETURNS TABLE (id int, body text, recalled boolean,
                                                  recalled_by text, recall_reason text)
LANGUAGE sql AS $$
    SELECT id, body, recalled_at IS NOT NULL, recalled_by, recall_reason
    FROM msgs WHERE id = i
$$;

------------------------------------------------------------------------
-- The sender themself
------------------------------------------------------------------------
SET ROLE regress_perm_app;
-- within the window: allowed
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice' WHERE id = 1;
SELECT * FROM pg_temp.msg(1);
-- past the window: refused, the DETAIL says when the window ended
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice' WHERE id = 2;
\echo :SQLSTATE
SELECT * FROM pg_temp.msg(2);

-- the window's edge: now() - sent_at <= recall_window is still inside
BEGIN;
INSERT INTO msgs VALUES (20, 'alice', now() - interval '1 hour', 'exactly one hour old');
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice' WHERE id = 20;
COMMIT;
SELECT * FROM pg_temp.msg(20);
BEGIN;
INSERT INTO msgs VALUES (21, 'alice', now() - interval '1 hour 1 microsecond', 'one tick too old');
\set VERBOSITY terse
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice' WHERE id = 21;
\set VERBOSITY default
\echo :SQLSTATE
ROLLBACK;

------------------------------------------------------------------------
-- Someone else's message
------------------------------------------------------------------------
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice' WHERE id = 3;
\echo :SQLSTATE
SELECT recall.recall('msgs', 3, 'alice');
\echo :SQLSTATE
-- a reason gives no power to a role that is not an admin
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice', recall_reason = 'please'
WHERE id = 3;
\echo :SQLSTATE
SELECT * FROM pg_temp.msg(3);

------------------------------------------------------------------------
-- Where the actor comes from: the statement's recalled_by, else the
-- setting recall.actor, else session_user
------------------------------------------------------------------------
SET recall.actor = 'bob';
UPDATE msgs SET recalled_at = now() WHERE id = 3;
SELECT * FROM pg_temp.msg(3);
SELECT recall.recall('msgs', 5);
SELECT * FROM pg_temp.msg(5);
-- the statement's value wins over the setting
SET recall.actor = 'alice';
UPDATE msgs SET recalled_at = now(), recalled_by = 'bob' WHERE id = 4;
SELECT * FROM pg_temp.msg(4);
-- recall.recall's actor argument too
SELECT recall.recall('msgs', 6, 'alice');
\echo :SQLSTATE
SELECT recall.recall('msgs', 6, 'carol');
SELECT * FROM pg_temp.msg(6);
RESET recall.actor;
-- nothing named: session_user (not current_user) is the actor
SELECT current_user;
UPDATE msgs SET recalled_at = now() WHERE id = 7;
SELECT id, body, recalled_at IS NOT NULL AS recalled, recalled_by = session_user AS by_session_user
FROM msgs WHERE id = 7;
\set VERBOSITY terse
UPDATE msgs SET recalled_at = now() WHERE id = 8;
\set VERBOSITY default
\echo :SQLSTATE

-- a non-admin's bulk recall of another sender is refused as a whole
SET recall.actor = 'alice';
SELECT recall.recall_sender('msgs', 'carol', 'spam');
\echo :SQLSTATE
RESET recall.actor;
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM msgs
WHERE sender = 'carol' ORDER BY id;

-- the application role recalled without any privilege on recall.events
-- or recall.audit, and may not read the audit log
SELECT has_table_privilege('recall.events', 'INSERT') AS events_insert,
       has_table_privilege('recall.audit', 'INSERT') AS audit_insert;
SELECT count(*) FROM recall.audit;
\echo :SQLSTATE
RESET ROLE;

------------------------------------------------------------------------
-- recall.recall runs with the caller's privileges: UPDATE is needed
------------------------------------------------------------------------
SET ROLE regress_perm_reader;
SELECT recall.recall('msgs', 8, 'carol');
\echo :SQLSTATE
RESET ROLE;
SELECT * FROM pg_temp.msg(8);

------------------------------------------------------------------------
-- A member of recall_admin: any message, always with a reason
------------------------------------------------------------------------
SET ROLE regress_perm_admin;
SET recall.actor = 'mod';
UPDATE msgs SET recalled_at = now() WHERE id = 8;
\echo :SQLSTATE
UPDATE msgs SET recalled_at = now(), recall_reason = '' WHERE id = 8;
\echo :SQLSTATE
SELECT * FROM pg_temp.msg(8);
-- with the statement's reason
UPDATE msgs SET recalled_at = now(), recall_reason = 'harassment' WHERE id = 8;
SELECT * FROM pg_temp.msg(8);
-- with the setting recall.reason
SET recall.reason = 'spam wave';
UPDATE msgs SET recalled_at = now() WHERE id = 9;
SELECT * FROM pg_temp.msg(9);
-- the statement's reason wins over the setting
UPDATE msgs SET recalled_at = now(), recall_reason = 'doxxing' WHERE id = 12;
SELECT * FROM pg_temp.msg(12);
RESET recall.reason;
-- with recall.recall's arguments
SELECT recall.recall('msgs', 13, 'mod', 'court order');
SELECT * FROM pg_temp.msg(13);
-- the admin's own fresh message is a plain self recall: no reason needed,
-- not privileged
UPDATE msgs SET recalled_at = now() WHERE id = 10;
SELECT * FROM pg_temp.msg(10);
-- the admin's own old message is past the window: admin power, so a reason
UPDATE msgs SET recalled_at = now() WHERE id = 11;
\echo :SQLSTATE
UPDATE msgs SET recalled_at = now(), recall_reason = 'cleanup' WHERE id = 11;
SELECT * FROM pg_temp.msg(11);
-- the admin's bulk recall
SELECT recall.recall_sender('msgs', 'dave', 'banned');
RESET recall.actor;
RESET ROLE;

-- a superuser counts as an admin, with a reason too
SET recall.actor = 'root';
UPDATE msgs SET recalled_at = now() WHERE id = 2;
\echo :SQLSTATE
UPDATE msgs SET recalled_at = now(), recall_reason = 'old leak' WHERE id = 2;
SELECT * FROM pg_temp.msg(2);
RESET recall.actor;

-- every event, in order: privileged exactly when admin power was used
SELECT pk, CASE WHEN actor = session_user THEN '(session user)' ELSE actor END AS actor,
       CASE WHEN db_role LIKE 'regress\_%' THEN db_role::text
            WHEN db_role = current_user THEN '(superuser)' END AS db_role,
       reason, privileged
FROM recall.events WHERE tbl = 'msgs'::regclass ORDER BY seq;

-- the audit log holds the privileged recalls, readable by an auditor
SET ROLE regress_perm_auditor;
SELECT action, pk, actor,
       CASE WHEN db_role LIKE 'regress\_%' THEN db_role::text
            WHEN db_role = session_user THEN '(superuser)' END AS db_role,
       reason, xid IS NOT NULL AS has_xid, at IS NOT NULL AS has_at
FROM recall.audit WHERE tbl = 'msgs'::regclass ORDER BY (pk->>'id')::int;
RESET ROLE;

-- what is left visible
SELECT id, sender, body FROM msgs_visible ORDER BY id;

------------------------------------------------------------------------
-- No sender column configured: nobody recalls as "self"
------------------------------------------------------------------------
CREATE TABLE anon (id int PRIMARY KEY, author text, body text);
INSERT INTO anon VALUES (1, 'alice', 'a'), (2, 'alice', 'b');
SELECT recall.enable('anon', '{body}');
GRANT SELECT, UPDATE ON anon TO regress_perm_app, regress_perm_admin;
SET ROLE regress_perm_app;
UPDATE anon SET recalled_at = now(), recalled_by = 'alice' WHERE id = 1;
\echo :SQLSTATE
SELECT recall.recall('anon', 1, 'alice');
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_perm_admin;
SELECT recall.recall('anon', 1, 'mod');
\echo :SQLSTATE
SELECT recall.recall('anon', 1, 'mod', 'no sender column');
RESET ROLE;
SELECT id, body, recalled_at IS NOT NULL AS recalled, recalled_by, recall_reason
FROM anon ORDER BY id;
SELECT pk, actor, db_role, reason, privileged FROM recall.events
WHERE tbl = 'anon'::regclass ORDER BY seq;

SET client_min_messages = warning;
DROP TABLE msgs, anon CASCADE;
RESET client_min_messages;
DROP ROLE regress_perm_app, regress_perm_admin, regress_perm_auditor, regress_perm_reader;
