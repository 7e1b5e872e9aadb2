-- A group commit takes a create's idempotency key before it inserts the task the key names,
-- with foreign keys deferred. While such a reference is outstanding, SQLite checks each task
-- inserted against every table that references tasks, looking for rows that name it; without
-- an index on the reference that look reads the whole table. So every keyed create read every
-- idempotency record ever stored, on the one writer that all creates wait for.
CREATE INDEX idempotency_keys_by_task ON idempotency_keys (task_id);
