-- Per-key overrides of the default limits (NULL: the server's default).
ALTER TABLE api_keys ADD COLUMN requests_per_second INTEGER;
ALTER TABLE api_keys ADD COLUMN max_concurrent_tasks INTEGER;

-- Counting a key's tasks in flight stays cheap however many it has finished.
CREATE INDEX tasks_in_flight_by_account ON tasks (account_id) WHERE state IN ('submitting', 'running');
