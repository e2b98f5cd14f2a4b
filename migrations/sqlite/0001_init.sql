-- AI Proxy schema, SQLite flavour. Keep in step with ../postgres/0001_init.sql: same tables,
-- columns and indexes. Ids are text (UUIDv7), times are unix milliseconds, booleans are 0/1.

CREATE TABLE config_state (
    id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO config_state (id, version) VALUES (1, 1);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    password_hash TEXT,
    instance_admin BIGINT NOT NULL DEFAULT 0,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    invite_token_hash TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX orgs_name ON orgs (name);

CREATE TABLE members (
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX projects_org_name ON projects (org_id, name);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project_id TEXT REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    preview TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);
CREATE INDEX api_keys_org ON api_keys (org_id);

CREATE TABLE provider_credentials (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project_id TEXT REFERENCES projects (id) ON DELETE CASCADE,
    scope_key TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    key_id TEXT NOT NULL,
    preview_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    secret_updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX provider_credentials_name ON provider_credentials (org_id, scope_key, name);
CREATE INDEX provider_credentials_project ON provider_credentials (project_id);

CREATE TABLE org_settings (
    org_id TEXT PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    api_url TEXT NOT NULL,
    proxy_url TEXT NOT NULL,
    realtime_url TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    org_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    details TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, created_at);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    build TEXT NOT NULL,
    replica TEXT NOT NULL,
    applied_version BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    details TEXT NOT NULL,
    connected BIGINT NOT NULL,
    connected_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    id TEXT PRIMARY KEY,
    sealed_key TEXT NOT NULL,
    key_id TEXT NOT NULL,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE request_logs (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    project_id TEXT,
    api_key_id TEXT,
    model TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    credential_name TEXT NOT NULL,
    route TEXT NOT NULL,
    status BIGINT NOT NULL,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    latency_ms BIGINT NOT NULL,
    ttft_ms BIGINT NOT NULL,
    latency_bucket BIGINT NOT NULL,
    ttft_bucket BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    cache_hit BIGINT NOT NULL,
    stream BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    attempts_json TEXT NOT NULL,
    input TEXT,
    output TEXT
);
CREATE INDEX request_logs_project_id ON request_logs (project_id, id);
CREATE INDEX request_logs_org_time ON request_logs (org_id, started_at);
