-- latest 50 messages of a random conversation, on the table
\set conv random(1, 12500)
SELECT id, conversation, sender, created_at, body, attachment, reactions
FROM messages
WHERE conversation = :conv AND recalled_at IS NULL
ORDER BY id DESC
LIMIT 50;
