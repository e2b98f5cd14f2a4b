//! Schema migrations, embedded in the binary: one numbered file per change, per backend, applied
//! in order at startup and by `migrate`, each in its own transaction and recorded in
//! `schema_migrations`. On Postgres an advisory lock keeps two replicas from migrating at once;
//! on SQLite each migration's transaction takes the write lock first and skips a migration
//! another process applied meanwhile.
//! Migrations are additive (new tables, new nullable columns), so an older replica keeps working
//! while a newer one migrates.

use super::{Backend, Db, DbError, DbResult};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../../../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "usage_index",
        sqlite: include_str!("../../../migrations/sqlite/0002_usage_index.sql"),
        postgres: include_str!("../../../migrations/postgres/0002_usage_index.sql"),
    },
    Migration {
        version: 3,
        name: "usage_rollup",
        sqlite: include_str!("../../../migrations/sqlite/0003_usage_rollup.sql"),
        postgres: include_str!("../../../migrations/postgres/0003_usage_rollup.sql"),
    },
    Migration {
        version: 4,
        name: "config_changes",
        sqlite: include_str!("../../../migrations/sqlite/0004_config_changes.sql"),
        postgres: include_str!("../../../migrations/postgres/0004_config_changes.sql"),
    },
    Migration {
        version: 5,
        name: "api_keys_project_index",
        sqlite: include_str!("../../../migrations/sqlite/0005_api_keys_project_index.sql"),
        postgres: include_str!("../../../migrations/postgres/0005_api_keys_project_index.sql"),
    },
];

const LOCK_ID: i64 = 0x0061_6970_726f_7879; // "aiproxy"

/// Applies pending migrations; returns how many were applied.
pub async fn run(db: &Db) -> DbResult<usize> {
    let mut conn = db.pool().acquire().await?;
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(LOCK_ID)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply(db, &mut conn).await;
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_ID)
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply(db: &Db, conn: &mut sqlx::pool::PoolConnection<sqlx::Any>) -> DbResult<usize> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        .execute(&mut **conn)
        .await?;
    let rows = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut **conn)
        .await?;
    let applied: Vec<i64> = rows
        .iter()
        .map(|r| super::i(r, "version"))
        .collect::<Result<_, _>>()?;
    let mut count = 0;
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let sql = if db.backend() == Backend::Postgres {
            m.postgres
        } else {
            m.sqlite
        };
        // On SQLite another process may be migrating the same file (PostgreSQL has the
        // advisory lock): `begin_on` takes the write lock first, then look again.
        let mut tx = db.begin_on(conn).await?;
        let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_some() {
            tx.rollback().await?;
            continue;
        }
        for stmt in statements(sql) {
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    DbError::Other(format!("migration {} ({}): {e}", m.version, m.name))
                })?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        count += 1;
    }
    Ok(count)
}

/// Splits a migration file into statements: `;` at the end of a line ends one; `--` comment
/// lines are dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if trimmed.ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Triggers and their functions are each backend's own (0004); everything else is the same.
    #[test]
    fn both_backends_have_the_same_tables_and_columns() {
        for m in MIGRATIONS {
            let norm = |s: &str| {
                statements(s)
                    .into_iter()
                    .filter(|st| {
                        !st.starts_with("CREATE TRIGGER") && !st.starts_with("CREATE FUNCTION")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(
                norm(m.sqlite),
                norm(m.postgres),
                "migration {} differs between backends",
                m.version
            );
        }
        assert!(
            statements("-- c\nCREATE TABLE a (x BIGINT);\nINSERT INTO a VALUES (1);\n").len() == 2
        );
    }

    /// A project's API keys are found through an index (the cascade when the project is
    /// deleted, a project's key list), not by reading every key of the instance.
    #[tokio::test]
    async fn a_projects_api_keys_are_read_through_an_index() {
        let (_dir, db, _) = super::super::two_sqlite_pools().await;
        run(&db).await.unwrap();
        let plan: Vec<String> =
            sqlx::query("EXPLAIN QUERY PLAN SELECT id FROM api_keys WHERE project_id = $1")
                .bind("p")
                .fetch_all(db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .collect();
        assert!(
            plan.iter()
                .any(|d| d.contains("USING INDEX api_keys_project")),
            "{plan:?}"
        );
    }

    /// Two processes starting on the same new SQLite file at once (`standalone` and a `serve`
    /// replica, say) both come up: each migration is applied once, by whichever gets there
    /// first, and the other sees it done.
    #[tokio::test]
    async fn two_processes_migrating_one_new_sqlite_file_at_once_both_succeed() {
        let (_dir, a, b) = super::super::two_sqlite_pools().await;
        let (ra, rb) = tokio::join!(run(&a), run(&b));
        let (na, nb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(na + nb, MIGRATIONS.len(), "applied {na} + {nb}");
        let rows = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(a.pool())
            .await
            .unwrap();
        let versions: Vec<i64> = rows
            .iter()
            .map(|r| super::super::i(r, "version").unwrap())
            .collect();
        assert_eq!(
            versions,
            MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
        );
        assert_eq!(run(&b).await.unwrap(), 0);
    }
}
