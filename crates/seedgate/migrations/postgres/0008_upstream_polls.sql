-- The poll schedule of tasks running upstream, apart from their wide rows: a poll rewrites a
-- few dozen bytes here, not the task's row with its request and job (nor announces it to the
-- replicas' task caches). The due ones are found per channel, most overdue first.
CREATE TABLE upstream_polls (
    task_id         TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    next_poll_at_ms BIGINT NOT NULL,
    polls           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX upstream_polls_due ON upstream_polls (channel, next_poll_at_ms);
INSERT INTO upstream_polls (task_id, channel, next_poll_at_ms, polls)
    SELECT id, channel, COALESCE(next_poll_at_ms, 0), polls FROM tasks
    WHERE state = 'running' AND upstream_id IS NOT NULL;
DROP INDEX tasks_due_polls;
