-- Change notifications between control-plane replicas: every commit that moves the catalog version
-- or logs a forget sends a NOTIFY on channel `aiproxy_changes`, delivered to listeners at commit
-- (never for a rolled-back transaction). Payload: `version:<n>` or `forget:<seq>`. A hint only:
-- replicas re-read both numbers after any reconnect, and keep polling as a fallback.
-- Identical notifications within one transaction are folded into one by Postgres (a forget logs one
-- row per alias, all with the same seq).
CREATE FUNCTION aiproxy_notify_version() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('aiproxy_changes', 'version:' || NEW.version);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER catalog_meta_notify
    AFTER UPDATE OF version ON catalog_meta
    FOR EACH ROW
    WHEN (NEW.version IS DISTINCT FROM OLD.version)
    EXECUTE FUNCTION aiproxy_notify_version();

CREATE FUNCTION aiproxy_notify_forget() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('aiproxy_changes', 'forget:' || NEW.seq);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER object_forgets_notify
    AFTER INSERT ON object_forgets
    FOR EACH ROW
    EXECUTE FUNCTION aiproxy_notify_forget();
