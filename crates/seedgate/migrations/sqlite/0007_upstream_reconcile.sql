-- A submission whose outcome was never seen (a timeout, a reset after the request went out, a
-- 5xx): the channel it went to and when it began. Before the task is submitted anywhere again,
-- that channel's tasks are listed and the one carrying this task's marks is adopted.
ALTER TABLE tasks ADD COLUMN doubt_channel TEXT;
ALTER TABLE tasks ADD COLUMN doubt_since_ms INTEGER;
-- The upstream's own view of a submitted task: its phase as last seen (a task still queued
-- there can be withdrawn, so it is shown as pending), when it expires it, and the usage it
-- reported (for reconciling the upstream's bill even when the result never arrived here).
ALTER TABLE tasks ADD COLUMN upstream_phase TEXT CHECK (upstream_phase IN ('queued', 'running', 'succeeded'));
ALTER TABLE tasks ADD COLUMN upstream_expires_at_ms INTEGER;
ALTER TABLE tasks ADD COLUMN upstream_usage_tokens INTEGER;
-- Failed copies of a finished upstream result; a few are retried, then the task fails uncharged.
ALTER TABLE tasks ADD COLUMN result_copy_failures INTEGER NOT NULL DEFAULT 0;
