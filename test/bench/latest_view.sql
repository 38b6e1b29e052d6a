-- latest 50 messages of a random conversation, through the view
\set conv random(1, 12500)
SELECT id, conversation, sender, created_at, body, attachment, reactions
FROM messages_visible
WHERE conversation = :conv
ORDER BY id DESC
LIMIT 50;
