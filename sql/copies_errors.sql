--
-- copies_errors: every bad argument of recall.add_copy / recall.drop_copy
-- fails with its SQLSTATE and leaves nothing half done: the registrations
-- (recall.copies), the guard triggers and the copy tables' rows are as
-- they were before the call.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_copies_err_user;
RESET client_min_messages;
CREATE ROLE regress_copies_err_user;

CREATE TABLE ce_msgs (id bigint PRIMARY KEY, sender text NOT NULL, body text,
                      reply_to bigint, quoted text);
CREATE INDEX ON ce_msgs (reply_to);
-- a copy table with columns of every kind the checks look at
CREATE TABLE ce_quotes (
    id          int PRIMARY KEY,
    msg_id      bigint,
    msg_ts      timestamptz,
    msg_flag    boolean,
    quoted      text,
    quoted_nn   text NOT NULL DEFAULT '[recalled]',
    n_nn        int NOT NULL,
    ts_nn       timestamptz NOT NULL DEFAULT now(),
    int_def_nn  int NOT NULL DEFAULT 0
);
CREATE INDEX ON ce_quotes (msg_id);
CREATE TABLE ce_plain (id bigint PRIMARY KEY, body text);         -- not enabled
CREATE TABLE ce_pair (room int, seq int, body text, PRIMARY KEY (room, seq));
CREATE VIEW ce_quotes_view AS SELECT * FROM ce_quotes;
CREATE SEQUENCE ce_seq;
INSERT INTO ce_msgs VALUES (1, 'alice', 'one', NULL, NULL), (2, 'bob', 'two', 1, 'one');
INSERT INTO ce_quotes (id, msg_id, quoted, n_nn) VALUES (1, 1, 'one', 1);
SELECT recall.enable('ce_msgs', '{body}', sender => 'sender');
SELECT recall.enable('ce_pair', '{body}');
-- one registration that must survive every failed call below
SELECT recall.add_copy('ce_msgs', 'ce_msgs', '{reply_to}', '{quoted}');

-- the state a failed call must leave alone
CREATE FUNCTION pg_temp.state() RETURNS text LANGUAGE sql AS $$
    SELECT concat_ws(' | ',
        (SELECT string_agg(concat_ws(' ', tbl, copy, match, content, wiped_values, action), '; '
                           ORDER BY tbl::text, copy::text, match::text)
         FROM recall.copies),
        (SELECT string_agg(tgrelid::regclass || '.' || tgname, ', ' ORDER BY 1)
         FROM pg_trigger WHERE tgname LIKE '~recall%'),
        (SELECT md5(string_agg(q::text, ',' ORDER BY q.id)) FROM ce_quotes q),
        (SELECT md5(string_agg(m::text, ',' ORDER BY m.id)) FROM ce_msgs m))
$$;
CREATE TEMP TABLE saved_state AS SELECT pg_temp.state() AS s;
CREATE FUNCTION pg_temp.unchanged() RETURNS boolean LANGUAGE sql AS $$
    SELECT pg_temp.state() = s FROM saved_state
$$;
SELECT tbl, copy, match, content, action FROM recall.copies;

------------------------------------------------------------------------
-- The tables
------------------------------------------------------------------------
-- an unknown copy table: the regclass cast fails
SELECT recall.add_copy('ce_msgs', 'ce_no_such_table', '{msg_id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'no_such_schema.ce_quotes', '{msg_id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- null tables
SELECT recall.add_copy('ce_msgs', NULL, '{msg_id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy(NULL, 'ce_quotes', '{msg_id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- a copy that is not a table
SELECT recall.add_copy('ce_msgs', 'ce_quotes_view', '{msg_id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_seq', '{last_value}', '{is_called}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- a message table not enabled for recall
SELECT recall.add_copy('ce_plain', 'ce_quotes', '{msg_id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();

------------------------------------------------------------------------
-- The match columns
------------------------------------------------------------------------
-- unknown column, system column
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{no_such_column}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{ctid}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{NULL}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- one match column per key column, no more, no less
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', NULL, '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id,id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_pair', 'ce_quotes', '{msg_id}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- a type that cannot hold the key's (bigint)
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_ts}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_flag}', '{quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();

------------------------------------------------------------------------
-- The action and the content columns
------------------------------------------------------------------------
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted}', 'erase');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted}', 'WIPE');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted}', NULL);
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- 'wipe' needs content columns
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- 'delete' takes none
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted}', 'delete');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- unknown content column, system column, null name
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted,no_such_column}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{xmin}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted,NULL}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- a content column that is the match column, listed twice, or (copy in
-- the message table itself) part of the message key
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted,msg_id}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted,quoted}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_msgs', '{reply_to}', '{quoted,id}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- NOT NULL content columns without a wiped value: an int without a
-- default, a timestamptz whose default is not a constant
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted,n_nn}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted,ts_nn}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- (NOT NULL with a constant default is fine: wiped to the default)
BEGIN;
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted,quoted_nn,int_def_nn}');
SELECT content, wiped_values FROM recall.copies WHERE copy = 'ce_quotes'::regclass;
ROLLBACK;
SELECT pg_temp.unchanged();

------------------------------------------------------------------------
-- Ownership: the caller must own both tables
------------------------------------------------------------------------
CREATE TABLE ce_user_msgs (id bigint PRIMARY KEY, body text);
CREATE TABLE ce_user_quotes (id int PRIMARY KEY, msg_id bigint, quoted text);
CREATE INDEX ON ce_user_quotes (msg_id);
ALTER TABLE ce_user_msgs OWNER TO regress_copies_err_user;
ALTER TABLE ce_user_quotes OWNER TO regress_copies_err_user;
SELECT recall.enable('ce_user_msgs', '{body}');
SELECT recall.add_copy('ce_user_msgs', 'ce_user_quotes', '{msg_id}', '{quoted}');
UPDATE saved_state SET s = pg_temp.state();
-- (terse: the SQLSTATE and the message are what is checked here)
\set VERBOSITY terse
SET ROLE regress_copies_err_user;
-- owns the copy table, not the message table
SELECT recall.add_copy('ce_msgs', 'ce_user_quotes', '{msg_id}', '{quoted}');
\echo :SQLSTATE
-- owns the message table, not the copy table
SELECT recall.add_copy('ce_user_msgs', 'ce_quotes', '{msg_id}', '{quoted}');
\echo :SQLSTATE
-- owns neither
SELECT recall.add_copy('ce_msgs', 'ce_quotes', '{msg_id}', '{quoted}');
\echo :SQLSTATE
SELECT recall.drop_copy('ce_msgs', 'ce_msgs', '{reply_to}');
\echo :SQLSTATE
-- cannot write the registry directly either
DELETE FROM recall.copies;
\echo :SQLSTATE
SELECT recall._copies_delete(c) FROM recall.copies c WHERE c.tbl = 'ce_msgs'::regclass;
\echo :SQLSTATE
SELECT recall._copies_put(c) FROM recall.copies c WHERE c.tbl = 'ce_msgs'::regclass;
\echo :SQLSTATE
SELECT recall._copy_guards('ce_msgs');
\echo :SQLSTATE
RESET ROLE;
\set VERBOSITY default
SELECT pg_temp.unchanged();
-- but may unregister its own
SET ROLE regress_copies_err_user;
SELECT recall.drop_copy('ce_user_msgs', 'ce_user_quotes', '{msg_id}');
RESET ROLE;
SELECT tbl, copy, match FROM recall.copies ORDER BY tbl::text, copy::text;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ce_msgs'::regclass AND tgname LIKE '~recall_copy%';
UPDATE saved_state SET s = pg_temp.state();

------------------------------------------------------------------------
-- drop_copy of what is not registered
------------------------------------------------------------------------
SELECT recall.drop_copy('ce_msgs', 'ce_quotes', '{msg_id}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- registered with another match
SELECT recall.drop_copy('ce_msgs', 'ce_msgs', '{id}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.drop_copy('ce_msgs', 'ce_msgs', NULL);
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
-- a table that is not enabled
SELECT recall.drop_copy('ce_plain', 'ce_quotes', '{msg_id}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();
SELECT recall.drop_copy('ce_msgs', 'ce_no_such_table', '{msg_id}');
SELECT :'SQLSTATE' AS sqlstate, pg_temp.unchanged();

-- after all of that, the one registration and its guard still work
SELECT tbl, copy, match, content, action FROM recall.copies;
SELECT recall.recall('ce_msgs', 1, 'alice');
SELECT id, body, reply_to, quoted FROM ce_msgs ORDER BY id;

SET client_min_messages = warning;
DROP TABLE ce_msgs, ce_quotes, ce_plain, ce_pair, ce_user_msgs, ce_user_quotes CASCADE;
DROP SEQUENCE ce_seq;
RESET client_min_messages;
DROP ROLE regress_copies_err_user;
