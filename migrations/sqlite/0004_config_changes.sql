-- What changed in the tables a configuration snapshot is built from, so the snapshot builder
-- reads only those rows instead of every table (control-plane/src/service/snapshot.rs).
-- Triggers on orgs, projects, api_keys and provider_credentials add one row per inserted,
-- updated or deleted row (cascaded deletes included), so no write path can forget one.
-- stamp orders the changes against the builder's read:
--   SQLite: the configuration version, bumped by the same trigger. SQLite has one writer at a
--   time, so stamps follow commit order, and a build that read version V has seen every
--   change stamped <= V and none stamped above it.
--   PostgreSQL: the writing transaction's id (pg_current_xact_id), which the builder checks
--   against the snapshot of its previous read (pg_visible_in_snapshot): transactions commit in
--   any order there, and a counter would need a lock every writer takes first.
-- at (unix ms, the database's clock) is for pruning: rows older than a day are deleted, and a
-- builder whose previous read is older than a few minutes reads everything again.
-- The tables and indexes are the same on both backends; the triggers are each backend's own.
CREATE TABLE config_changes (
    tbl TEXT NOT NULL,
    row_id TEXT NOT NULL,
    stamp BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX config_changes_stamp ON config_changes (stamp);
CREATE TRIGGER orgs_config_ins AFTER INSERT ON orgs BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('orgs', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
CREATE TRIGGER orgs_config_upd AFTER UPDATE ON orgs BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('orgs', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); INSERT INTO config_changes (tbl, row_id, stamp, at) SELECT 'orgs', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE OLD.id <> NEW.id; END;
CREATE TRIGGER orgs_config_del AFTER DELETE ON orgs BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('orgs', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
CREATE TRIGGER projects_config_ins AFTER INSERT ON projects BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('projects', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
CREATE TRIGGER projects_config_upd AFTER UPDATE ON projects BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('projects', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); INSERT INTO config_changes (tbl, row_id, stamp, at) SELECT 'projects', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE OLD.id <> NEW.id; END;
CREATE TRIGGER projects_config_del AFTER DELETE ON projects BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('projects', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
CREATE TRIGGER api_keys_config_ins AFTER INSERT ON api_keys BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('api_keys', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
CREATE TRIGGER api_keys_config_upd AFTER UPDATE ON api_keys BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('api_keys', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); INSERT INTO config_changes (tbl, row_id, stamp, at) SELECT 'api_keys', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE OLD.id <> NEW.id; END;
CREATE TRIGGER api_keys_config_del AFTER DELETE ON api_keys BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('api_keys', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
CREATE TRIGGER provider_credentials_config_ins AFTER INSERT ON provider_credentials BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('provider_credentials', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
CREATE TRIGGER provider_credentials_config_upd AFTER UPDATE ON provider_credentials BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('provider_credentials', NEW.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); INSERT INTO config_changes (tbl, row_id, stamp, at) SELECT 'provider_credentials', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE OLD.id <> NEW.id; END;
CREATE TRIGGER provider_credentials_config_del AFTER DELETE ON provider_credentials BEGIN UPDATE config_state SET version = version + 1 WHERE id = 1; INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('provider_credentials', OLD.id, (SELECT version FROM config_state WHERE id = 1), CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)); END;
