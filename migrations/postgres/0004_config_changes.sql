-- What changed in the tables a configuration snapshot is built from: see
-- ../sqlite/0004_config_changes.sql. The tables and indexes are the same; here stamp is the
-- writing transaction's id, and the triggers take no lock (config_state is still bumped once,
-- at the end of each change, by the application).
CREATE TABLE config_changes (
    tbl TEXT NOT NULL,
    row_id TEXT NOT NULL,
    stamp BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX config_changes_stamp ON config_changes (stamp);
CREATE FUNCTION aiproxy_config_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF TG_OP <> 'INSERT' THEN INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES (TG_TABLE_NAME, OLD.id, CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT), CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)); END IF; IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR OLD.id <> NEW.id) THEN INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES (TG_TABLE_NAME, NEW.id, CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT), CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)); END IF; RETURN NULL; END $$;
CREATE TRIGGER orgs_config_change AFTER INSERT OR UPDATE OR DELETE ON orgs FOR EACH ROW EXECUTE FUNCTION aiproxy_config_change();
CREATE TRIGGER projects_config_change AFTER INSERT OR UPDATE OR DELETE ON projects FOR EACH ROW EXECUTE FUNCTION aiproxy_config_change();
CREATE TRIGGER api_keys_config_change AFTER INSERT OR UPDATE OR DELETE ON api_keys FOR EACH ROW EXECUTE FUNCTION aiproxy_config_change();
CREATE TRIGGER provider_credentials_config_change AFTER INSERT OR UPDATE OR DELETE ON provider_credentials FOR EACH ROW EXECUTE FUNCTION aiproxy_config_change();
