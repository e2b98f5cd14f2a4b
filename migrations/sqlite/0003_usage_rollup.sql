-- Usage rollups, so the usage query reads periods instead of rows. Two levels:
--   level 1: per hour and project (api_key_id, model, provider_type are ''): group_by hour, day, project;
--   level 2: per day, project, API key, model and provider: group_by model, provider, api_key.
-- The query reads whole periods from usage_rollup and the partial periods at the range's edges,
-- plus periods still marked in usage_dirty, from request_logs. Ingest marks the periods it
-- writes (gen counts the marks); a background job re-aggregates each ended, marked period from
-- request_logs and removes its mark unless it was marked again meanwhile.
-- Histograms are 'bucket:count' pairs separated by spaces (buckets of db::logs::latency_bucket).
-- project_id and api_key_id are '' where the log has none.
CREATE TABLE usage_rollup (
    org_id TEXT NOT NULL,
    level BIGINT NOT NULL,
    period BIGINT NOT NULL,
    project_id TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    cache_hits BIGINT NOT NULL,
    latency_hist TEXT NOT NULL,
    ttft_hist TEXT NOT NULL,
    PRIMARY KEY (org_id, level, period, project_id, api_key_id, model, provider_type)
);
CREATE TABLE usage_dirty (
    org_id TEXT NOT NULL,
    level BIGINT NOT NULL,
    period BIGINT NOT NULL,
    gen BIGINT NOT NULL,
    PRIMARY KEY (org_id, level, period)
);
-- Logs stored before this migration: every period they cover is rolled up by the job.
INSERT INTO usage_dirty (org_id, level, period, gen) SELECT DISTINCT org_id, 1, started_at / 3600000, 1 FROM request_logs;
INSERT INTO usage_dirty (org_id, level, period, gen) SELECT DISTINCT org_id, 2, started_at / 86400000, 1 FROM request_logs;
