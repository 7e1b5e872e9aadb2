-- A new task is announced like a change, so a key's event stream on any replica hears of it
-- when it is made, not only at its first update (service/events.rs).
CREATE TRIGGER tasks_announce_creation AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_announce_change();
