-- interleaved baseline of recall.sql: the bare UPDATE that does what a
-- recall does to the row, on the twin table.  A fresh id per transaction
-- (the sequence is shared with recall.sql, so every row is new to both).
UPDATE messages_twin
SET recalled_at = now(), recalled_by = 'bench', body = NULL, attachment = NULL
WHERE id = (SELECT nextval('bench_ids'));
