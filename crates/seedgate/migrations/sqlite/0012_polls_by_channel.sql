-- Upstream tasks are polled many at a time, one channel per request: the due ones are found
-- per channel, most overdue first.
DROP INDEX tasks_due_polls;
CREATE INDEX tasks_due_polls ON tasks (channel, next_poll_at_ms) WHERE state = 'running' AND upstream_id IS NOT NULL;
