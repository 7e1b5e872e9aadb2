-- Upstream tasks: which channel holds the task, under which upstream id, when to poll it next,
-- and when it must be finished by.
ALTER TABLE tasks ADD COLUMN channel TEXT;
ALTER TABLE tasks ADD COLUMN upstream_id TEXT;
ALTER TABLE tasks ADD COLUMN next_poll_at_ms INTEGER;
ALTER TABLE tasks ADD COLUMN polls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN deadline_at_ms INTEGER;
ALTER TABLE tasks ADD COLUMN submit_started_at_ms INTEGER;

CREATE INDEX tasks_due_polls ON tasks (next_poll_at_ms) WHERE state = 'running' AND upstream_id IS NOT NULL;
-- One upstream task never belongs to two of ours.
CREATE UNIQUE INDEX tasks_by_upstream ON tasks (channel, upstream_id) WHERE upstream_id IS NOT NULL;
CREATE INDEX tasks_in_flight ON tasks (channel) WHERE state IN ('submitting', 'running');
