-- The id of the request that created a task (the client's `X-Request-Id`, or one minted), so
-- the engine's and the providers' log lines for the task carry it too.
ALTER TABLE tasks ADD COLUMN request_id TEXT;
