-- interleaved baseline of insert.sql: the same INSERT on the twin table
\set conv random(1, 12500)
INSERT INTO messages_twin (id, conversation, sender, created_at, body, attachment)
VALUES (nextval('msg_ids'), :conv, 'bench', now(),
        'a new message of about the usual length, sent to the conversation', NULL);
