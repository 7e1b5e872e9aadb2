-- Tasks in flight (submitting or running) per key and per upstream channel, kept by triggers in
-- the same statement as every change of a task's state or channel. Limits then cost one row
-- read, however many tasks a key or channel has in flight; counting rows made each claim
-- slower as work piled up (quadratic at tens of thousands in flight).
ALTER TABLE api_keys ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
UPDATE api_keys SET in_flight = (
    SELECT COUNT(*) FROM tasks
    WHERE tasks.account_id = api_keys.id AND tasks.state IN ('submitting', 'running'));

CREATE TABLE channel_load (
    id TEXT PRIMARY KEY,
    in_flight INTEGER NOT NULL
);
INSERT INTO channel_load (id, in_flight)
    SELECT channel, COUNT(*) FROM tasks
    WHERE channel IS NOT NULL AND state IN ('submitting', 'running') GROUP BY channel;

CREATE TRIGGER tasks_in_flight_insert AFTER INSERT ON tasks
WHEN NEW.state IN ('submitting', 'running')
BEGIN
    UPDATE api_keys SET in_flight = in_flight + 1 WHERE id = NEW.account_id;
    INSERT INTO channel_load (id, in_flight) SELECT NEW.channel, 1 WHERE NEW.channel IS NOT NULL
        ON CONFLICT (id) DO UPDATE SET in_flight = in_flight + 1;
END;

CREATE TRIGGER tasks_in_flight_delete AFTER DELETE ON tasks
WHEN OLD.state IN ('submitting', 'running')
BEGIN
    UPDATE api_keys SET in_flight = in_flight - 1 WHERE id = OLD.account_id;
    UPDATE channel_load SET in_flight = in_flight - 1 WHERE id = OLD.channel;
END;

CREATE TRIGGER tasks_in_flight_account AFTER UPDATE OF state ON tasks
WHEN (OLD.state IN ('submitting', 'running')) != (NEW.state IN ('submitting', 'running'))
BEGIN
    UPDATE api_keys
    SET in_flight = in_flight + CASE WHEN NEW.state IN ('submitting', 'running') THEN 1 ELSE -1 END
    WHERE id = NEW.account_id;
END;

-- A task leaves its old place (if it held one) and takes its new one (if it holds one).
CREATE TRIGGER tasks_in_flight_channel AFTER UPDATE OF state, channel ON tasks
WHEN OLD.state IS NOT NEW.state OR OLD.channel IS NOT NEW.channel
BEGIN
    UPDATE channel_load SET in_flight = in_flight - 1
    WHERE id = OLD.channel AND OLD.state IN ('submitting', 'running');
    INSERT INTO channel_load (id, in_flight)
        SELECT NEW.channel, 1 WHERE NEW.channel IS NOT NULL AND NEW.state IN ('submitting', 'running')
        ON CONFLICT (id) DO UPDATE SET in_flight = in_flight + 1;
END;

-- What the counters replace.
DROP INDEX tasks_in_flight_by_account;
DROP INDEX tasks_in_flight;
