-- What the vendor that made a task reported billing for it besides tokens: compute time (fal,
-- Replicate) and money (OpenRouter), for the operator's cost records. The vendor itself is the
-- task's `provider` once one accepted it.
ALTER TABLE tasks ADD COLUMN upstream_compute_ms INTEGER;
ALTER TABLE tasks ADD COLUMN upstream_cost_usd_micros INTEGER;
