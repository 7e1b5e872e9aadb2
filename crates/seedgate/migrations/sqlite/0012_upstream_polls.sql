-- The poll schedule of tasks running upstream, apart from their wide rows: a poll rewrites a
-- few dozen bytes here, not the task's row with its request and job. The due ones are found
-- per channel (one list request asks about many tasks of one channel), most overdue first.
CREATE TABLE upstream_polls (
    task_id         TEXT PRIMARY KEY NOT NULL,
    channel         TEXT NOT NULL,
    next_poll_at_ms INTEGER NOT NULL,
    polls           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX upstream_polls_due ON upstream_polls (channel, next_poll_at_ms);
INSERT INTO upstream_polls (task_id, channel, next_poll_at_ms, polls)
    SELECT id, channel, COALESCE(next_poll_at_ms, 0), polls FROM tasks
    WHERE state = 'running' AND upstream_id IS NOT NULL;
DROP INDEX tasks_due_polls;
