-- Result files are deleted once their task has been over for `assets.retention_seconds`. A
-- sweeper leases a batch of such tasks (`sweep_until_ms`, taken with SKIP LOCKED so replicas
-- sweeping at once take different tasks), deletes their files, then records when
-- (`files_swept_at_ms`) and empties the stored job, which holds the inputs as sent. The task
-- stays readable, its result marked expired.
ALTER TABLE tasks ADD COLUMN files_swept_at_ms BIGINT;
ALTER TABLE tasks ADD COLUMN sweep_until_ms BIGINT;
-- Swept tasks leave the index, so finding the next batch stays cheap as tasks accumulate.
CREATE INDEX tasks_unswept ON tasks (completed_at_ms) WHERE files_swept_at_ms IS NULL;
