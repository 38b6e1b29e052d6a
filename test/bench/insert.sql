-- insert a new message into a random conversation (same on both tables)
\set conv random(1, 12500)
INSERT INTO messages (id, conversation, sender, created_at, body, attachment)
VALUES (nextval('msg_ids'), :conv, 'bench', now(),
        'a new message of about the usual length, sent to the conversation', NULL);
