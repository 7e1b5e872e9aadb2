-- Replicas keep recently polled tasks in memory; every change to what a poll shows is
-- announced with the task's id so each replica drops its copy (store/taskcache.rs). Lease
-- renewals and poll scheduling change nothing a client sees and announce nothing.
CREATE FUNCTION tasks_announce_change() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('seedgate_task_changed', NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_announce_change AFTER UPDATE OF state, usage_tokens, cost_usd_micros,
    cost_cny, result, error_code, error_message, attempts, channel, upstream_id, polls,
    deadline_at_ms, submit_started_at_ms, doubt_channel, doubt_since_ms, upstream_phase,
    upstream_expires_at_ms, upstream_usage_tokens, result_copy_failures, files_swept_at_ms,
    updated_at_ms, completed_at_ms ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_announce_change();
