//! The database: one pool over SQLite or PostgreSQL (sqlx's `Any` driver), the same schema and
//! the same SQL for both (ids TEXT, times BIGINT unix ms, booleans BIGINT 0/1; placeholders
//! `$1…$n` numbered in order of first use, which both backends accept). Query modules per
//! aggregate hold SQL only; the rules live in `service`.

pub mod api_keys;
pub mod audit;
pub mod bulk;
pub mod logs;
pub mod migrate;
pub mod nodes;
pub mod orgs;
pub mod projects;
pub mod providers;
pub mod sessions;
pub mod settings;
pub mod users;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow, AnyTransactionManager};
use sqlx::{Any, AnyPool, Row, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// A unique constraint was violated; carries a description of the duplicate.
    #[error("{0} already exists")]
    Unique(String),
    #[error("foreign key violation")]
    ForeignKey,
    /// The database cannot be reached or is overloaded; the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> DbError {
        match &e {
            sqlx::Error::Database(d) => {
                if d.is_unique_violation() {
                    DbError::Unique("a resource with that name".into())
                } else if d.is_foreign_key_violation() {
                    DbError::ForeignKey
                } else {
                    let msg = d.message().to_string();
                    // SQLite busy/locked and Postgres admin shutdown / connection failures.
                    if msg.contains("database is locked")
                        || msg.contains("terminating connection")
                        || matches!(
                            d.code().as_deref(),
                            Some("57P01" | "57P02" | "57P03" | "08006" | "08001")
                        )
                    {
                        DbError::Unavailable(msg)
                    } else {
                        DbError::Other(msg)
                    }
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(e.to_string()),
            _ => DbError::Other(e.to_string()),
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// A transaction from `Db::begin` or `Db::begin_read`. On SQLite, one from `begin` also holds
/// this process's write turn (see `Db::write_turns`) until it is committed, rolled back or
/// dropped. It dereferences to its connection, as sqlx's `Transaction` does.
pub struct Tx(TxInner);

enum TxInner {
    /// PostgreSQL, and reads on either backend: a pooled connection.
    Pooled(sqlx::Transaction<'static, Any>),
    /// A SQLite write, on the connection the write turn holds.
    Turn(TurnTx),
}

/// The SQLite write connection (`Db::write_turns`): opened on first use and kept; dropped after
/// a `BEGIN` failed, so that the next write opens another.
type WriteSlot = Option<sqlx::AnyConnection>;

/// A SQLite write transaction on the write connection, holding the write turn. Unfinished when
/// dropped, its rollback is queued on the connection at once (as sqlx's `Transaction` does),
/// before the turn passes to the next writer.
struct TurnTx {
    conn: tokio::sync::OwnedMappedMutexGuard<WriteSlot, sqlx::AnyConnection>,
    open: bool,
}

impl Drop for TurnTx {
    fn drop(&mut self) {
        if self.open {
            AnyTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

impl TurnTx {
    /// Commits or rolls back; the turn passes on when this drops.
    async fn end(mut self, commit: bool) -> Result<(), sqlx::Error> {
        if commit {
            AnyTransactionManager::commit(&mut self.conn).await?;
        } else {
            AnyTransactionManager::rollback(&mut self.conn).await?;
        }
        self.open = false;
        Ok(())
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.0 {
            TxInner::Pooled(t) => t.commit().await,
            TxInner::Turn(t) => t.end(true).await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.0 {
            TxInner::Pooled(t) => t.rollback().await,
            TxInner::Turn(t) => t.end(false).await,
        }
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &sqlx::AnyConnection {
        match &self.0 {
            TxInner::Pooled(t) => t,
            TxInner::Turn(t) => &t.conn,
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        match &mut self.0 {
            TxInner::Pooled(t) => t,
            TxInner::Turn(t) => &mut t.conn,
        }
    }
}

/// How long a SQLite writer waits for the write lock (`busy_timeout`), and for this process's
/// write turn (`Db::begin`), before giving up with `DbError::Unavailable`.
const SQLITE_WRITE_WAIT: Duration = Duration::from_secs(5);
const BUSY_TIMEOUT_PRAGMA: &str = "PRAGMA busy_timeout = 5000";
const _: () = assert!(SQLITE_WRITE_WAIT.as_millis() == 5000);

/// How a SQLite transaction that may write begins (see `Db::begin`).
const SQLITE_BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// What every SQLite connection runs first, the pool's and log ingest's own alike. 16 KiB
/// pages for a new file (an existing one keeps its size): a quarter of the WAL frames and
/// write calls per ingested batch; measured with `BENCH_ONLY=ingest` (bench/README),
/// control-plane CPU per usage record −9% (mean of 7 interleaved pairs).
const SQLITE_PRAGMAS: [&str; 5] = [
    "PRAGMA page_size = 16384",
    "PRAGMA journal_mode = WAL",
    BUSY_TIMEOUT_PRAGMA,
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
];

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    url: data_plane::secret::Secret,
    /// SQLite has one write lock and no queue for it: a writer that finds it taken sleeps and
    /// retries (busy_timeout), so a job committing many short transactions back to back can
    /// keep another writer out past its timeout, and concurrent API writes spend most of their
    /// time asleep in that retry loop (SQLite's sleeps grow from 1 ms to 100 ms). Every write
    /// transaction (`begin`) and log retention's deletes take turns here instead, first come
    /// first served. Unused on PostgreSQL.
    ///
    /// The turn holds the connection the write transactions (`begin`) run on, one for the
    /// process. In WAL mode a connection empties its page cache whenever another connection
    /// has committed since its last transaction, so with writes spread over the pool's 8
    /// connections nearly every write read its B-tree pages from the file again (`pread`s
    /// copying 16 KiB pages); writes take turns anyway, so one connection costs no concurrency,
    /// and its cache stays warm until log ingest's connection or another process writes. It is
    /// not a pool's: a pool hands a connection back through a task it spawns, which first pings
    /// the connection's worker thread, so each write paid one more round trip and a task's
    /// scheduling while the next writer waited for the connection (ARCHITECTURE.md).
    write_turns: std::sync::Arc<tokio::sync::Mutex<WriteSlot>>,
    /// SQLite: log ingest's own connection, sqlx's SQLite driver without the `Any` layer
    /// (`Db::sqlite_ingest`), kept between batches; empty until first used or after an error.
    ingest_conn: std::sync::Arc<std::sync::Mutex<Option<sqlx::SqliteConnection>>>,
}

/// Log ingest's write transaction on SQLite (`Db::sqlite_ingest`): its own connection and this
/// process's write turn, held until it is dropped or finished.
pub struct SqliteIngest {
    conn: sqlx::SqliteConnection,
    slot: std::sync::Arc<std::sync::Mutex<Option<sqlx::SqliteConnection>>>,
    _turn: tokio::sync::OwnedMutexGuard<WriteSlot>,
}

impl SqliteIngest {
    /// Begins the write transaction (`BEGIN IMMEDIATE`, as `Db::begin`).
    pub async fn begin(&mut self) -> DbResult<sqlx::Transaction<'_, sqlx::Sqlite>> {
        Ok(sqlx::Connection::begin_with(&mut self.conn, SQLITE_BEGIN_WRITE).await?)
    }

    /// Keeps the connection for the next batch. Only after a commit: one left by an error is
    /// dropped instead (closing it rolls back whatever it had begun), and the next batch opens
    /// a new one.
    pub fn finish(self) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(self.conn);
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({:?})", self.backend)
    }
}

impl Db {
    /// Connects (creating the SQLite file if needed). Fails fast with a clear message.
    pub async fn connect(url: &str) -> Result<Db, String> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err("AIPROXY_DATABASE_URL: expected sqlite://… or postgres://…".into());
        };
        if backend == Backend::Sqlite {
            // In memory, each pooled connection (and log ingest's own) would see a database
            // of its own.
            let path = sqlite_path(url).ok_or(
                "AIPROXY_DATABASE_URL: an in-memory SQLite database cannot be shared by the \
                 control plane's connections; name a file, e.g. sqlite://data/aiproxy.db?mode=rwc",
            )?;
            if let Some(dir) = std::path::Path::new(&path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
        }
        let options = |max_connections| {
            AnyPoolOptions::new()
                .max_connections(max_connections)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(5))
                // sqlx pings an idle connection before handing it out. For SQLite that is one more
                // round trip to the connection's worker thread on every acquire, in the caller's
                // path, and finds nothing the ping sqlx makes when the connection goes back to the
                // pool has not already found (it drops a connection whose worker is gone); on
                // PostgreSQL it finds connections the server or the network dropped while idle.
                .test_before_acquire(backend == Backend::Postgres)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            for pragma in SQLITE_PRAGMAS {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                        }
                        Ok(())
                    })
                })
        };
        let connect_err = |e: sqlx::Error| {
            format!(
                "cannot connect to the database: {}",
                redact_url_error(&e.to_string(), url)
            )
        };
        let pool = match backend {
            Backend::Sqlite => options(8),
            Backend::Postgres => options(16),
        }
        .connect(url)
        .await
        .map_err(connect_err)?;
        Ok(Db {
            pool,
            backend,
            url: data_plane::secret::Secret::new(url),
            write_turns: Default::default(),
            ingest_conn: Default::default(),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL this pool connects to (for a dedicated LISTEN connection).
    pub fn url(&self) -> &data_plane::secret::Secret {
        &self.url
    }

    /// On SQLite, waits for this process's turn to write (see `write_turns`) and holds it until
    /// the guard is dropped; on PostgreSQL, returns at once (its row locks queue writers).
    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, WriteSlot>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_turns.lock().await),
            Backend::Postgres => None,
        }
    }

    /// Begins a transaction that may write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`, waiting up to busy_timeout for it): a deferred transaction that
    /// reads and then writes fails at once with "database is locked" when another connection
    /// (this process's pool, another replica, `rotate-master-key`) committed in between, and
    /// busy_timeout does not cover that upgrade.
    ///
    /// On SQLite the transaction holds this process's write turn (`write_turns`) until it ends,
    /// so a caller holding one must not begin another; waiting more than `SQLITE_WRITE_WAIT` for
    /// the turn (as for the lock itself) is `DbError::Unavailable`.
    pub async fn begin(&self) -> DbResult<Tx> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let mut turn = self.owned_write_turn().await?;
                let conn = match turn.take() {
                    Some(conn) => conn,
                    None => self.sqlite_connection().await?,
                };
                let conn = turn.insert(conn);
                if let Err(e) =
                    AnyTransactionManager::begin(conn, Some(SQLITE_BEGIN_WRITE.into_sql_str()))
                        .await
                {
                    *turn = None;
                    return Err(e.into());
                }
                let conn = tokio::sync::OwnedMutexGuard::try_map(turn, Option::as_mut)
                    .map_err(|_| DbError::Other("the write connection went missing".into()))?;
                Tx(TxInner::Turn(TurnTx { conn, open: true }))
            }
            Backend::Postgres => Tx(TxInner::Pooled(self.pool.begin().await?)),
        })
    }

    /// A new SQLite connection with the pool's pragmas (the write connection's).
    async fn sqlite_connection(&self) -> DbResult<sqlx::AnyConnection> {
        let mut conn =
            <sqlx::AnyConnection as sqlx::Connection>::connect(self.url.expose()).await?;
        for pragma in SQLITE_PRAGMAS {
            sqlx::query(pragma).execute(&mut conn).await?;
        }
        Ok(conn)
    }

    /// This process's write turn, waiting at most `SQLITE_WRITE_WAIT` for it.
    async fn owned_write_turn(&self) -> DbResult<tokio::sync::OwnedMutexGuard<WriteSlot>> {
        let t = std::time::Instant::now();
        let turn = tokio::time::timeout(SQLITE_WRITE_WAIT, self.write_turns.clone().lock_owned())
            .await
            .map_err(|_| {
                DbError::Unavailable(format!(
                    "database is busy: no write turn within {} s",
                    SQLITE_WRITE_WAIT.as_secs()
                ))
            });
        // Counted for a task that asked (`counting_turn_waits`); nothing otherwise.
        let _ = TURN_WAITED.try_with(|w| w.set(w.get() + t.elapsed()));
        turn
    }

    /// SQLite: the write turn and log ingest's own connection (opened on first use, with the
    /// pool's pragmas). Ingest writes through sqlx's SQLite driver directly: through `Any`
    /// every text argument was copied once more and allocated twice more on its way to SQLite
    /// (`sqlx_sqlite::any::map_arguments`), for the payloads too. The connection is used only
    /// while the write turn is held, so it is never shared.
    pub async fn sqlite_ingest(&self) -> DbResult<SqliteIngest> {
        let turn = self.owned_write_turn().await?;
        let conn = match self.take_ingest_conn() {
            Some(conn) => conn,
            None => {
                use std::str::FromStr;
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(self.url.expose())?;
                let mut conn =
                    <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts).await?;
                for pragma in SQLITE_PRAGMAS {
                    sqlx::query(pragma).execute(&mut conn).await?;
                }
                conn
            }
        };
        Ok(SqliteIngest {
            conn,
            slot: self.ingest_conn.clone(),
            _turn: turn,
        })
    }

    /// `begin` on a connection the caller holds (the migrations', which on PostgreSQL holds
    /// their advisory lock).
    pub async fn begin_on<'c>(
        &self,
        conn: &'c mut sqlx::AnyConnection,
    ) -> DbResult<sqlx::Transaction<'c, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => sqlx::Connection::begin_with(conn, SQLITE_BEGIN_WRITE).await?,
            Backend::Postgres => sqlx::Connection::begin(conn).await?,
        })
    }

    /// Begins a transaction that only reads: one consistent view, and on SQLite no write lock,
    /// so writers go on meanwhile.
    pub async fn begin_read(&self) -> DbResult<Tx> {
        Ok(Tx(TxInner::Pooled(self.pool.begin().await?)))
    }

    /// Is the database answering?
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Log ingest's kept SQLite connection, taken out of its slot (`None` when none is kept).
    fn take_ingest_conn(&self) -> Option<sqlx::SqliteConnection> {
        self.ingest_conn
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
    }

    pub async fn close(&self) {
        if let Some(conn) = self.take_ingest_conn() {
            let _ = sqlx::Connection::close(conn).await;
        }
        // The SQLite write connection (always empty on PostgreSQL).
        let conn = self.write_turns.lock().await.take();
        if let Some(conn) = conn {
            let _ = sqlx::Connection::close(conn).await;
        }
        self.pool.close().await;
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty()
        || path.contains(":memory:")
        || query.split('&').any(|kv| kv == "mode=memory")
    {
        None
    } else {
        Some(path.to_string())
    }
}

/// Driver errors may quote the URL; never let a password through.
fn redact_url_error(msg: &str, url: &str) -> String {
    msg.replace(url, "[database url]")
}

// Row helpers: decoding errors become DbError::Other.
pub(crate) fn s(row: &AnyRow, col: &str) -> DbResult<String> {
    row.try_get::<String, _>(col).map_err(DbError::from)
}

pub(crate) fn os(row: &AnyRow, col: &str) -> DbResult<Option<String>> {
    row.try_get::<Option<String>, _>(col).map_err(DbError::from)
}

pub(crate) fn i(row: &AnyRow, col: &str) -> DbResult<i64> {
    row.try_get::<i64, _>(col).map_err(DbError::from)
}

pub(crate) fn oi(row: &AnyRow, col: &str) -> DbResult<Option<i64>> {
    row.try_get::<Option<i64>, _>(col).map_err(DbError::from)
}

pub(crate) fn f(row: &AnyRow, col: &str) -> DbResult<f64> {
    row.try_get::<f64, _>(col).map_err(DbError::from)
}

/// A nullable float; SUM over integers comes back as an integer on some backends.
pub(crate) fn of(row: &AnyRow, col: &str) -> DbResult<Option<f64>> {
    match row.try_get::<Option<f64>, _>(col) {
        Ok(v) => Ok(v),
        Err(_) => row
            .try_get::<Option<i64>, _>(col)
            .map(|v| v.map(|n| n as f64))
            .map_err(DbError::from),
    }
}

tokio::task_local! {
    /// How long the task has waited for a write turn, in `counting_turn_waits`.
    static TURN_WAITED: std::cell::Cell<Duration>;
}

/// Runs `work` and returns, with its output, how long it waited for this process's write turn
/// (`Db::begin`, log ingest; SQLite only: zero on PostgreSQL).
pub async fn counting_turn_waits<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    TURN_WAITED
        .scope(std::cell::Cell::new(Duration::ZERO), async {
            let out = work.await;
            (out, TURN_WAITED.with(std::cell::Cell::get))
        })
        .await
}

/// Bumps the configuration version inside a transaction; every change that alters what nodes
/// serve calls this, so the new snapshot carries a higher version.
pub async fn bump_config_version(tx: &mut Tx) -> DbResult<()> {
    sqlx::query("UPDATE config_state SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn config_version(db: &Db) -> DbResult<i64> {
    let row = sqlx::query("SELECT version FROM config_state WHERE id = 1")
        .fetch_one(db.pool())
        .await?;
    i(&row, "version")
}

impl DbError {
    pub fn is_unique(&self) -> bool {
        matches!(self, DbError::Unique(_))
    }
}

/// Two pools on one new SQLite file, as two processes (replicas, a CLI command) would hold.
#[cfg(test)]
pub(crate) async fn two_sqlite_pools() -> (tempfile::TempDir, Db, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/shared.db?mode=rwc", dir.path().display());
    let (a, b) = (
        Db::connect(&url).await.unwrap(),
        Db::connect(&url).await.unwrap(),
    );
    (dir, a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://./data/aiproxy.db?mode=rwc").as_deref(),
            Some("./data/aiproxy.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://file::memory:?cache=shared"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory&cache=shared"), None);
        assert_eq!(
            sqlite_path("sqlite://x.db?mode=rwc").as_deref(),
            Some("x.db")
        );
    }

    #[tokio::test]
    async fn in_memory_sqlite_is_refused_with_a_clear_error() {
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory"] {
            let err = Db::connect(url).await.unwrap_err();
            assert!(err.contains("in-memory SQLite"), "{url}: {err}");
        }
    }

    /// Runs `sql` on `db`'s pool (a test's set-up).
    async fn exec(db: &Db, sql: &'static str) {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }

    /// The one value, `n`, that `sql` reads through `db`'s pool.
    async fn int(db: &Db, sql: &'static str) -> i64 {
        let r = sqlx::query(sql).fetch_one(db.pool()).await.unwrap();
        i(&r, "n").unwrap()
    }

    /// One write transaction (`Db::begin`) inserting `x` into `t`.
    async fn write_x(db: Db, x: i64) -> DbResult<()> {
        let mut tx = db.begin().await?;
        sqlx::query("INSERT INTO t (x) VALUES ($1)")
            .bind(x)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `SUM(x)` of the test table `t` (0 when empty).
    async fn sum_x(db: &Db) -> i64 {
        int(db, "SELECT COALESCE(SUM(x), 0) AS n FROM t").await
    }

    /// PostgreSQL: the server process behind the pool connection this query got.
    async fn backend_pid(db: &Db) -> i64 {
        int(db, "SELECT pg_backend_pid()::BIGINT AS n").await
    }

    async fn pragma(db: &Db, name: &str) -> String {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
            .fetch_one(db.pool())
            .await
            .unwrap();
        use sqlx::Row;
        r.try_get::<String, _>(0)
            .or_else(|_| r.try_get::<i64, _>(0).map(|n| n.to_string()))
            .unwrap()
    }

    /// On SQLite the pool hands out an idle connection without pinging it first (one round trip
    /// less per acquire); on PostgreSQL it pings, so a connection the server dropped while idle
    /// is replaced instead of failing the next query.
    #[tokio::test]
    async fn idle_connections_are_tested_before_use_on_postgres_only() {
        let t = crate::testing::TestDb::new().await;
        let db = Db::connect(&t.url).await.unwrap();
        let tested = db.pool().options().get_test_before_acquire();
        if db.backend() == Backend::Sqlite {
            assert!(!tested);
            return;
        }
        assert!(tested);
        let first = backend_pid(&db).await;
        // Another session ends that idle connection's server process.
        let admin = sqlx::AnyPool::connect(&t.url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend(CAST($1 AS INTEGER))")
            .bind(first)
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let second = backend_pid(&db).await;
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn new_sqlite_files_get_16_kib_pages_and_existing_files_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = format!("sqlite://{}/new.db?mode=rwc", dir.path().display());
        let db = Db::connect(&fresh).await.unwrap();
        migrate::run(&db).await.unwrap();
        assert_eq!(pragma(&db, "page_size").await, "16384");
        assert_eq!(pragma(&db, "journal_mode").await, "wal");
        db.pool().close().await;

        // A file made before, with 4 KiB pages and data in it, opens as it is.
        let old = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&old).await.unwrap();
        sqlx::query("PRAGMA page_size = 4096")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x BIGINT)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t (x) VALUES (7)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let db = Db::connect(&old).await.unwrap();
        assert_eq!(pragma(&db, "page_size").await, "4096");
        assert_eq!(pragma(&db, "journal_mode").await, "wal");
        let r = sqlx::query("SELECT x FROM t")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(i(&r, "x").unwrap(), 7);
    }

    /// A transaction that reads, then writes after another connection (here: a second process's
    /// pool on the same file, as a second replica or `rotate-master-key` would be) committed in
    /// between, commits; the other writer waits for it instead of either failing.
    #[tokio::test]
    async fn sqlite_write_transactions_survive_a_commit_from_another_connection() {
        let (_dir, a, b) = two_sqlite_pools().await;
        exec(&a, "CREATE TABLE t (x BIGINT)").await;
        exec(&a, "INSERT INTO t (x) VALUES (1)").await;
        let mut tx = a.begin().await.unwrap();
        let r = sqlx::query("SELECT SUM(x) AS n FROM t")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(i(&r, "n").unwrap(), 1);
        let other = tokio::spawn(async move {
            sqlx::query("INSERT INTO t (x) VALUES (10)")
                .execute(b.pool())
                .await
                .map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("INSERT INTO t (x) VALUES (100)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        other.await.unwrap().unwrap();
        assert_eq!(sum_x(&a).await, 111);
    }

    /// `counting_turn_waits` counts the task's own waits for the write turn, for `begin` and
    /// ingest alike, and nothing it did not wait for: not a turn it got at once, nor another
    /// task's wait.
    #[tokio::test]
    async fn turn_waits_are_counted_for_the_task_that_waited() {
        let (_dir, db, _) = two_sqlite_pools().await;
        exec(&db, "CREATE TABLE t (x BIGINT)").await;
        let (r, free) = counting_turn_waits(write_x(db.clone(), 1)).await;
        r.unwrap();
        assert!(
            free < Duration::from_millis(100),
            "no one held the turn: {free:?}"
        );
        let held = db.begin().await.unwrap();
        let waiter = tokio::spawn(counting_turn_waits(write_x(db.clone(), 10)));
        // Another task waiting meanwhile, outside any count.
        let uncounted = tokio::spawn(write_x(db.clone(), 100));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ingest_waiter = tokio::spawn({
            let db = db.clone();
            counting_turn_waits(async move { db.sqlite_ingest().await.map(|i| i.finish()) })
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        held.commit().await.unwrap();
        let (r, waited) = waiter.await.unwrap();
        r.unwrap();
        uncounted.await.unwrap().unwrap();
        let (r, ingest_waited) = ingest_waiter.await.unwrap();
        r.unwrap();
        assert!(waited >= Duration::from_millis(450), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        assert!(
            ingest_waited >= Duration::from_millis(150),
            "{ingest_waited:?}"
        );
        assert!(
            ingest_waited < waited,
            "{ingest_waited:?} against {waited:?}"
        );
        assert_eq!(sum_x(&db).await, 111);
    }

    /// Log ingest's own SQLite connection: an ingest left without `finish` (an error part-way)
    /// writes nothing and gives back the write turn; the next one opens a new connection, and
    /// a finished one's connection is kept and its writes are seen by the pool.
    #[tokio::test]
    async fn an_abandoned_sqlite_ingest_writes_nothing_and_the_next_one_succeeds() {
        let (_dir, db, _) = two_sqlite_pools().await;
        exec(&db, "CREATE TABLE t (x BIGINT)").await;
        {
            let mut ingest = db.sqlite_ingest().await.unwrap();
            let mut tx = ingest.begin().await.unwrap();
            sqlx::query("INSERT INTO t (x) VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            // Dropped here without commit or finish, as `?` would.
        }
        assert!(db.ingest_conn.lock().unwrap().is_none());
        for x in [10, 100] {
            let mut ingest = tokio::time::timeout(Duration::from_secs(2), db.sqlite_ingest())
                .await
                .expect("the write turn was given back")
                .unwrap();
            let mut tx = ingest.begin().await.unwrap();
            sqlx::query("INSERT INTO t (x) VALUES (?)")
                .bind(x)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            ingest.finish();
            assert!(db.ingest_conn.lock().unwrap().is_some());
        }
        assert_eq!(sum_x(&db).await, 110);
        // The pool still writes (SQLite's lock was released by the abandoned connection).
        let mut tx = db.begin().await.unwrap();
        sqlx::query("INSERT INTO t (x) VALUES (1000)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(sum_x(&db).await, 1110);
        db.close().await;
        assert!(db.ingest_conn.lock().unwrap().is_none());
    }

    /// A write transaction on SQLite's write connection that is dropped unfinished, or after a
    /// statement failed, writes nothing; the connection is kept for the next one (its rollback
    /// runs first), and log ingest's own connection gets SQLite's lock at once.
    #[tokio::test]
    async fn an_unfinished_sqlite_write_writes_nothing_and_the_next_writers_go_on() {
        let (_dir, db, _) = two_sqlite_pools().await;
        exec(&db, "CREATE TABLE t (x BIGINT)").await;
        async fn insert(conn: &mut sqlx::AnyConnection, x: i64) {
            sqlx::query("INSERT INTO t (x) VALUES ($1)")
                .bind(x)
                .execute(conn)
                .await
                .unwrap();
        }
        // A bound on a hang, not a timing assertion.
        async fn soon<T>(f: impl std::future::Future<Output = T>, what: &str) -> T {
            tokio::time::timeout(Duration::from_secs(2), f)
                .await
                .expect(what)
        }
        {
            let mut tx = db.begin().await.unwrap();
            insert(&mut tx, 1).await;
            // Dropped here without commit, as `?` would.
        }
        assert_eq!(sum_x(&db).await, 0);
        assert!(
            db.write_turns.lock().await.is_some(),
            "the connection is kept"
        );
        {
            let mut tx = db.begin().await.unwrap();
            insert(&mut tx, 2).await;
            let failed = sqlx::query("INSERT INTO missing (x) VALUES (1)")
                .execute(&mut *tx)
                .await;
            assert!(failed.is_err());
        }
        let mut tx = soon(db.begin(), "the write turn was given back")
            .await
            .unwrap();
        insert(&mut tx, 10).await;
        tx.commit().await.unwrap();
        let tx = db.begin().await.unwrap();
        tx.rollback().await.unwrap();
        {
            let _abandoned = db.begin().await.unwrap();
        }
        let mut ingest = soon(db.sqlite_ingest(), "the write turn was given back")
            .await
            .unwrap();
        let mut tx = soon(
            ingest.begin(),
            "SQLite's lock was released by the write connection",
        )
        .await
        .unwrap();
        sqlx::query("INSERT INTO t (x) VALUES (100)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        ingest.finish();
        assert_eq!(sum_x(&db).await, 110);
        db.close().await;
        assert!(
            db.write_turns.lock().await.is_none(),
            "closed with the pool"
        );
    }

    /// Write transactions of one process take turns in arrival order (SQLite's own waiting
    /// writers sleep and retry in no order), and a writer that cannot get its turn within
    /// `SQLITE_WRITE_WAIT` gets `Unavailable` rather than waiting without end.
    #[tokio::test]
    async fn sqlite_write_transactions_take_turns_in_arrival_order() {
        let (_dir, a, _b) = two_sqlite_pools().await;
        exec(
            &a,
            "CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, x BIGINT)",
        )
        .await;
        let first = a.begin().await.unwrap();
        let mut waiting = Vec::new();
        for x in 1..=4i64 {
            waiting.push(tokio::spawn(write_x(a.clone(), x)));
            // Each writer queued before the next one starts.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "a writer went ahead of an open write transaction"
        );
        first.commit().await.unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        let order: Vec<i64> = sqlx::query_scalar("SELECT x FROM t ORDER BY seq")
            .fetch_all(a.pool())
            .await
            .unwrap();
        assert_eq!(order, vec![1, 2, 3, 4]);

        let held = a.begin().await.unwrap();
        let e = match a.begin().await {
            Err(e) => e,
            Ok(_) => panic!("a second write transaction began while the first was open"),
        };
        assert!(
            matches!(&e, DbError::Unavailable(m) if m.contains("no write turn")),
            "{e:?}"
        );
        held.rollback().await.unwrap();
        // The turn is free again once the holder ends.
        a.begin().await.unwrap().commit().await.unwrap();
    }
}
