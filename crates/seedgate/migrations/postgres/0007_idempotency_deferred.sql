-- A group commit takes a create's idempotency key before it inserts the group's tasks; the
-- key's task must exist when the transaction commits, not at the statement.
ALTER TABLE idempotency_keys ALTER CONSTRAINT idempotency_keys_task_id_fkey DEFERRABLE;
