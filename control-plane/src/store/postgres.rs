//! The scale-out store on PostgreSQL, for several control-plane replicas
//! sharing one database (docs/operations.md "PostgreSQL and replicas").
//!
//! Tables (migration 1, [`MIGRATIONS`]): `meta` (schema version, settings,
//! audit chain head), `licenses` (one row per license: its JSON record, and the
//! columns that queries filter on, written from the same record), `users`,
//! `tokens` (API token digest → user), `keys`, `audit` (one row per record,
//! indexed by target). Records are stored as the JSON text the sled store
//! holds, byte for byte: an audit record's hash covers its JSON, which `jsonb`
//! would reorder. Ad-hoc queries can cast: `record::jsonb`.
//!
//! Correctness across replicas, in the database, not in any process:
//! - a license write is a compare-and-set on its `version` column (`UPDATE
//!   ... WHERE version = $read`, `INSERT ... ON CONFLICT DO NOTHING` for a new
//!   one); zero rows means another writer, on any replica, got there first:
//!   [`Error::Conflict`], and the service re-reads and decides again. So a
//!   heartbeat that read a license before a revoke committed cannot write its
//!   lease after it;
//! - a [`Change`] is one transaction, so a state change and its audit records
//!   land together;
//! - audit appends lock the chain's head row (`SELECT ... FOR UPDATE`), which
//!   serializes them across replicas into one chain;
//! - rows are locked in one order (licenses by id, then users, keys, settings,
//!   the head), so two transactions cannot deadlock on each other.
//!
//! Durability: a commit returns once PostgreSQL has committed, which with its
//! defaults (`fsync`, `synchronous_commit = on`) is on disk.

use super::{AuditQuery, Change, KeyRecord, LicenseQuery, Page, SCHEMA_VERSION, Store, SweepScan};
use crate::domain::audit::{AuditRecord, ChainHead};
use crate::domain::ids::{LicenseId, SecretDigest, UserId};
use crate::domain::license::{License, State, Status, SweepFacts};
use crate::domain::settings::Settings;
use crate::domain::user::User;
use crate::error::{Error, Result};
use keys::UnixTime;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection as _, Postgres, Row as _, Transaction};
use std::time::Duration;

/// The schema, as numbered migrations applied in order at start
/// ([`PgStore::connect`]); a database with a number this build does not know
/// is refused. Never edit one that has shipped: add the next.
///
/// `licenses` keeps a fifth of each page free: a heartbeat rewrites its row
/// without changing an indexed column, which PostgreSQL can then do within the
/// page (a HOT update) instead of adding an entry to every index.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "licenses, users, tokens, keys, audit, meta",
    r#"
CREATE TABLE meta (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE licenses (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    status text NOT NULL,
    grace_until bigint,
    subscription_ends_at bigint,
    bound boolean NOT NULL,
    customer text COLLATE "C" NOT NULL,
    record text NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX licenses_by_customer ON licenses (customer, id);
CREATE INDEX licenses_by_status ON licenses (status, id);
CREATE TABLE users (
    id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE tokens (
    digest text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL REFERENCES users (id)
);
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE TABLE keys (
    kid text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    at bigint NOT NULL,
    target text COLLATE "C" NOT NULL,
    action text COLLATE "C" NOT NULL,
    record text NOT NULL
);
CREATE INDEX audit_by_target ON audit (target, seq);
"#,
)];

/// Serializes migrations across replicas starting at once
/// (`pg_advisory_xact_lock`); an arbitrary constant ("lic" "migr").
const MIGRATION_LOCK: i64 = 0x6c69_635f_6d69_6772;

const SCHEMA_KEY: &str = "schema_version";
const SETTINGS_KEY: &str = "settings";
const HEAD_KEY: &str = "audit_head";

/// Connections per replica: heartbeats hold one for a single statement, an
/// audited change for one transaction.
const POOL_SIZE: u32 = 16;

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// `url` with the password, if any, replaced by `****`, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:****@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Creates the database `name` (letters, digits and `_` only) on the server
/// `server_url` points to (any database there, as a role that may create
/// databases), and returns its URL. For tests and benchmarks, which take a
/// fresh database each.
pub async fn create_database(server_url: &str, name: &str) -> Result<String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::bad_request(format!(
            "not a plain database name: {name:?}"
        )));
    }
    let (scheme, rest) = server_url
        .split_once("://")
        .ok_or_else(|| Error::bad_request("not a postgres:// URL"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    let mut connection = sqlx::postgres::PgConnection::connect(server_url)
        .await
        .map_err(|e| Error::Store(format!("connecting to {}: {e}", redact(server_url))))?;
    // A database name cannot be a bind parameter; `name` is checked above.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut connection)
        .await
        .map_err(pg_err)?;
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

fn pg_err(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e {
        // serialization_failure, deadlock_detected, unique_violation: another
        // writer got there first; the caller re-reads and retries.
        if matches!(db.code().as_deref(), Some("40001" | "40P01" | "23505")) {
            return Error::Conflict;
        }
    }
    Error::Store(format!("PostgreSQL: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Store(e.to_string()))
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::Store(format!("a stored record is unreadable: {e}")))
}

fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(pg_err)
}

fn record<T: DeserializeOwned>(row: &PgRow) -> Result<T> {
    decode(&column::<String>(row, "record")?)
}

/// A count or limit as PostgreSQL's `bigint`.
fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns of a license row besides its record.
struct LicenseColumns<'a> {
    id: &'a str,
    version: i64,
    status: &'static str,
    grace_until: Option<i64>,
    subscription_ends_at: Option<i64>,
    bound: bool,
    customer: &'a str,
    record: String,
}

impl LicenseColumns<'_> {
    fn of(license: &License) -> Result<LicenseColumns<'_>> {
        Ok(LicenseColumns {
            id: license.id.as_str(),
            version: big(license.version),
            status: license.state.status().as_str(),
            grace_until: license.state.grace_until().map(|t| t.0),
            subscription_ends_at: license.subscription_ends_at.map(|t| t.0),
            bound: license.is_bound(),
            customer: &license.customer,
            record: encode(license)?,
        })
    }
}

fn license_id(text: &str) -> Result<LicenseId> {
    LicenseId::parse(text).ok_or_else(|| Error::Store("a stored license has a malformed id".into()))
}

impl PgStore {
    /// Connects to `url` and applies the migrations this build knows.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| Error::Store(format!("connecting to {}: {e}", redact(url))))?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// The pool, for tests and tools that look at the tables directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies, in one transaction under an advisory lock, every migration the
    /// database lacks. Refuses a database migrated by a newer build.
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pg_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        // Asked first rather than `CREATE TABLE IF NOT EXISTS`, whose notice
        // would be logged at every start.
        let tracked: bool = sqlx::query("SELECT to_regclass('schema_migrations') IS NOT NULL AS t")
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get("t"))
            .map_err(pg_err)?;
        if !tracked {
            sqlx::raw_sql(
                "CREATE TABLE schema_migrations (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        }
        let applied: i32 =
            sqlx::query("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get("v"))
                .map_err(pg_err)?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if applied > known {
            return Err(Error::Store(format!(
                "the database has schema migration {applied}; this build knows up to {known}"
            )));
        }
        for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            sqlx::query("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)")
                .bind(version)
                .bind(description)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            tracing::info!(version, description, "applied a schema migration");
        }
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(HEAD_KEY)
            .bind(encode(&ChainHead::default())?)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }

    async fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_err)?
            .map(|row| decode(&column::<String>(&row, "value")?))
            .transpose()
    }

    /// Applies `change` in one transaction; returns the audit records written.
    async fn apply(&self, change: &Change, at: UnixTime, init: bool) -> Result<Vec<AuditRecord>> {
        if let ([write], true) = (
            change.licenses.as_slice(),
            !init && change.is_license_only(),
        ) {
            // A heartbeat: one statement, its own transaction.
            return write_license(&self.pool, write).await.map(|()| Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(pg_err)?;
        if init {
            let created = sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(SCHEMA_KEY)
            .bind(encode(&SCHEMA_VERSION)?)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
            if created.rows_affected() == 0 {
                return Err(Error::Conflict);
            }
        }
        let mut writes: Vec<_> = change.licenses.iter().collect();
        writes.sort_by(|a, b| a.license.id.as_str().cmp(b.license.id.as_str()));
        for write in writes {
            write_license(&mut *tx, write).await?;
        }
        let mut users: Vec<_> = change.users.iter().collect();
        users.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        for user in users {
            put_user(&mut tx, user).await?;
        }
        let mut keys: Vec<_> = change.keys.iter().collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        for key in keys {
            sqlx::query(
                "INSERT INTO keys (kid, record) VALUES ($1, $2)
                 ON CONFLICT (kid) DO UPDATE SET record = EXCLUDED.record",
            )
            .bind(&key.kid)
            .bind(encode(key)?)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        }
        if let Some(settings) = &change.settings {
            put_meta(&mut tx, SETTINGS_KEY, &encode(settings)?).await?;
        }
        let mut written = Vec::with_capacity(change.audit.len());
        if !change.audit.is_empty() {
            let row = sqlx::query("SELECT value FROM meta WHERE key = $1 FOR UPDATE")
                .bind(HEAD_KEY)
                .fetch_one(&mut *tx)
                .await
                .map_err(pg_err)?;
            let mut head: ChainHead = decode(&column::<String>(&row, "value")?)?;
            for event in &change.audit {
                let record = AuditRecord::chain(&head, at, event.clone());
                insert_audit(&mut tx, &record).await?;
                head = record.head();
                written.push(record);
            }
            put_meta(&mut tx, HEAD_KEY, &encode(&head)?).await?;
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(written)
    }

    /// Copies everything `from` holds into this store, which must be empty, in
    /// one transaction: licenses, users and their tokens, keys, settings, and
    /// the audit records as they are (their sequence numbers and hashes), with
    /// the chain's head. `control-plane migrate` then verifies the copy
    /// ([`super::migrate::verify`]).
    pub async fn import(&self, from: &dyn Store) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(pg_err)?;
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1 FOR UPDATE")
            .bind(HEAD_KEY)
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err)?;
        let head: ChainHead = decode(&column::<String>(&row, "value")?)?;
        let empty: bool = sqlx::query(
            "SELECT NOT EXISTS (SELECT 1 FROM meta WHERE key = $1)
                AND NOT EXISTS (SELECT 1 FROM licenses)
                AND NOT EXISTS (SELECT 1 FROM users)
                AND NOT EXISTS (SELECT 1 FROM audit) AS empty",
        )
        .bind(SCHEMA_KEY)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get("empty"))
        .map_err(pg_err)?;
        if !empty || head != ChainHead::default() {
            return Err(Error::bad_request(
                "the target database is not empty: migrate copies into a fresh database only",
            ));
        }
        put_meta(&mut tx, SCHEMA_KEY, &encode(&SCHEMA_VERSION)?).await?;
        let mut after = None;
        loop {
            let page = from
                .licenses(&LicenseQuery {
                    after,
                    limit: 2000,
                    ..LicenseQuery::default()
                })
                .await?;
            insert_licenses(&mut tx, &page.items).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        for user in from.users().await? {
            put_user(&mut tx, &user).await?;
        }
        for key in from.keys().await? {
            sqlx::query("INSERT INTO keys (kid, record) VALUES ($1, $2)")
                .bind(&key.kid)
                .bind(encode(&key)?)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
        }
        put_meta(&mut tx, SETTINGS_KEY, &encode(&from.settings().await?)?).await?;
        let mut after = None;
        loop {
            let page = from
                .audit(&AuditQuery {
                    after,
                    limit: 5000,
                    ..AuditQuery::default()
                })
                .await?;
            for record in &page.items {
                insert_audit(&mut tx, record).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        put_meta(&mut tx, HEAD_KEY, &encode(&from.audit_head().await?)?).await?;
        tx.commit().await.map_err(pg_err)
    }
}

/// One license write, checked against the version it was read at.
async fn write_license<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    write: &super::LicenseWrite,
) -> Result<()> {
    let c = LicenseColumns::of(&write.license)?;
    let (sql, expected) = match write.expected_version {
        None => (
            "INSERT INTO licenses
                (id, version, status, grace_until, subscription_ends_at, bound, customer, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO NOTHING",
            None,
        ),
        Some(version) => (
            "UPDATE licenses SET version = $2, status = $3, grace_until = $4,
                subscription_ends_at = $5, bound = $6, customer = $7, record = $8
             WHERE id = $1 AND version = $9",
            Some(big(version)),
        ),
    };
    let query = sqlx::query(sql)
        .bind(c.id)
        .bind(c.version)
        .bind(c.status)
        .bind(c.grace_until)
        .bind(c.subscription_ends_at)
        .bind(c.bound)
        .bind(c.customer)
        .bind(c.record);
    let query = match expected {
        Some(version) => query.bind(version),
        None => query,
    };
    let done = query.execute(executor).await.map_err(pg_err)?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(Error::Conflict)
    }
}

/// Inserts new licenses, many to a statement (the migration's bulk copy).
async fn insert_licenses(tx: &mut Transaction<'_, Postgres>, licenses: &[License]) -> Result<()> {
    if licenses.is_empty() {
        return Ok(());
    }
    let columns = licenses
        .iter()
        .map(LicenseColumns::of)
        .collect::<Result<Vec<_>>>()?;
    sqlx::query(
        "INSERT INTO licenses
            (id, version, status, grace_until, subscription_ends_at, bound, customer, record)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                              $6::boolean[], $7::text[], $8::text[])",
    )
    .bind(columns.iter().map(|c| c.id).collect::<Vec<_>>())
    .bind(columns.iter().map(|c| c.version).collect::<Vec<_>>())
    .bind(columns.iter().map(|c| c.status).collect::<Vec<_>>())
    .bind(columns.iter().map(|c| c.grace_until).collect::<Vec<_>>())
    .bind(
        columns
            .iter()
            .map(|c| c.subscription_ends_at)
            .collect::<Vec<_>>(),
    )
    .bind(columns.iter().map(|c| c.bound).collect::<Vec<_>>())
    .bind(columns.iter().map(|c| c.customer).collect::<Vec<_>>())
    .bind(
        columns
            .iter()
            .map(|c| c.record.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await
    .map_err(pg_err)?;
    Ok(())
}

async fn insert_audit(tx: &mut Transaction<'_, Postgres>, record: &AuditRecord) -> Result<()> {
    sqlx::query("INSERT INTO audit (seq, at, target, action, record) VALUES ($1, $2, $3, $4, $5)")
        .bind(big(record.seq))
        .bind(record.at.0)
        .bind(&record.event.target)
        .bind(&record.event.action)
        .bind(encode(record)?)
        .execute(&mut **tx)
        .await
        .map_err(pg_err)?;
    Ok(())
}

async fn put_meta(tx: &mut Transaction<'_, Postgres>, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await
    .map_err(pg_err)?;
    Ok(())
}

/// Writes a user and replaces its API tokens.
async fn put_user(tx: &mut Transaction<'_, Postgres>, user: &User) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, record) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
    )
    .bind(user.id.as_str())
    .bind(encode(user)?)
    .execute(&mut **tx)
    .await
    .map_err(pg_err)?;
    sqlx::query("DELETE FROM tokens WHERE user_id = $1")
        .bind(user.id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(pg_err)?;
    if !user.token_digests.is_empty() {
        sqlx::query(
            "INSERT INTO tokens (digest, user_id) SELECT d, $2 FROM UNNEST($1::text[]) AS d",
        )
        .bind(
            user.token_digests
                .iter()
                .map(SecretDigest::as_str)
                .collect::<Vec<_>>(),
        )
        .bind(user.id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(pg_err)?;
    }
    Ok(())
}

/// The page of `rows` (fetched with `limit + 1`) and the cursor of the next.
fn page<T, C>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> C) -> Page<T, C> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next }
}

/// A page size as SQL's `LIMIT`: at least 1, and one more row than the page,
/// to learn whether another page follows.
fn sql_limit(limit: usize) -> (usize, i64) {
    let limit = limit.clamp(1, i64::MAX as usize - 1);
    (limit, big(limit as u64 + 1))
}

/// The audit query's filters; `$5` is the cursor, compared with `after`.
macro_rules! audit_sql {
    ($after:literal) => {
        concat!(
            "SELECT record FROM audit
             WHERE ($1::text IS NULL OR target = $1)
               AND ($2::text IS NULL OR action = $2)
               AND ($3::bigint IS NULL OR at >= $3)
               AND ($4::bigint IS NULL OR at < $4)
               AND ($5::bigint IS NULL OR seq ",
            $after,
            " $5)"
        )
    };
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn is_initialized(&self) -> Result<bool> {
        Ok(self.meta::<u32>(SCHEMA_KEY).await?.is_some())
    }

    async fn license(&self, id: &LicenseId) -> Result<Option<License>> {
        sqlx::query("SELECT record FROM licenses WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_err)?
            .map(|row| record(&row))
            .transpose()
    }

    async fn licenses(&self, query: &LicenseQuery) -> Result<Page<License, LicenseId>> {
        let (limit, sql_limit) = sql_limit(query.limit);
        let rows = sqlx::query(
            "SELECT record FROM licenses
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text IS NULL OR customer = $2)
               AND ($3::text IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(query.status.map(Status::as_str))
        .bind(query.customer.as_deref())
        .bind(query.after.as_ref().map(LicenseId::as_str))
        .bind(sql_limit)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err)?;
        let items = rows.iter().map(record).collect::<Result<Vec<License>>>()?;
        Ok(page(items, limit, |l| l.id.clone()))
    }

    async fn count_by_state(&self) -> Result<std::collections::HashMap<Status, u64>> {
        let rows = sqlx::query("SELECT status, count(*) AS n FROM licenses GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|row| {
                let status: String = column(row, "status")?;
                let n: i64 = column(row, "n")?;
                let status = Status::parse(&status).ok_or_else(|| {
                    Error::Store(format!("a stored license has status {status:?}"))
                })?;
                Ok((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// Reads only the columns the decision needs, never the record.
    async fn licenses_due_for_sweep(
        &self,
        now: UnixTime,
        after: Option<&LicenseId>,
        limit: usize,
    ) -> Result<SweepScan> {
        let (limit, _) = sql_limit(limit);
        let rows = sqlx::query(
            "SELECT id, status, grace_until, subscription_ends_at, bound FROM licenses
             WHERE ($1::text IS NULL OR id > $1)
             ORDER BY id LIMIT $2",
        )
        .bind(after.map(LicenseId::as_str))
        .bind(big(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err)?;
        let mut scan = SweepScan::default();
        for row in &rows {
            scan.examined += 1;
            let status: String = column(row, "status")?;
            let state = Status::parse(&status)
                .and_then(|s| {
                    State::from_parts(
                        s,
                        column::<Option<i64>>(row, "grace_until")
                            .ok()?
                            .map(UnixTime),
                    )
                })
                .ok_or_else(|| Error::Store(format!("a stored license has state {status:?}")))?;
            let facts = SweepFacts {
                state,
                bound: column(row, "bound")?,
                subscription_ends_at: column::<Option<i64>>(row, "subscription_ends_at")?
                    .map(UnixTime),
            };
            if facts.due(now).is_some() {
                scan.due.push(license_id(&column::<String>(row, "id")?)?);
            }
        }
        if rows.len() == limit {
            scan.next = rows
                .last()
                .map(|row| license_id(&column::<String>(row, "id")?))
                .transpose()?;
        }
        Ok(scan)
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        sqlx::query("SELECT record FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_err)?
            .map(|row| record(&row))
            .transpose()
    }

    async fn user_by_token(&self, digest: &SecretDigest) -> Result<Option<User>> {
        sqlx::query(
            "SELECT u.record FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.digest = $1",
        )
        .bind(digest.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_err)?
        .map(|row| record(&row))
        .transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        sqlx::query("SELECT record FROM users ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err)?
            .iter()
            .map(record)
            .collect()
    }

    async fn settings(&self) -> Result<Settings> {
        Ok(self.meta(SETTINGS_KEY).await?.unwrap_or_default())
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        sqlx::query("SELECT record FROM keys ORDER BY kid")
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err)?
            .iter()
            .map(record)
            .collect()
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord, u64>> {
        let (limit, sql_limit) = sql_limit(query.limit);
        let sql = if query.newest_first {
            concat!(audit_sql!("<"), " ORDER BY seq DESC LIMIT $6")
        } else {
            concat!(audit_sql!(">"), " ORDER BY seq ASC LIMIT $6")
        };
        let rows = sqlx::query(sql)
            .bind(query.target.as_deref())
            .bind(query.action.as_deref())
            .bind(query.from.map(|t| t.0))
            .bind(query.until.map(|t| t.0))
            .bind(query.after.map(big))
            .bind(sql_limit)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err)?;
        let items = rows
            .iter()
            .map(record)
            .collect::<Result<Vec<AuditRecord>>>()?;
        Ok(page(items, limit, |r| r.seq))
    }

    async fn commit(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        if change.is_empty() {
            return Ok(Vec::new());
        }
        self.apply(&change, at, false).await
    }

    async fn initialize(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        self.apply(&change, at, true).await
    }

    /// Every commit is durable when it returns: nothing to wait for.
    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(pg_err)
    }

    async fn audit_head(&self) -> Result<ChainHead> {
        Ok(self.meta(HEAD_KEY).await?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact("postgres://lic:s3cret@db.example:5432/licensing?sslmode=require"),
            "postgres://lic:****@db.example:5432/licensing?sslmode=require"
        );
        assert_eq!(
            redact("postgresql://lic@127.0.0.1/licensing"),
            "postgresql://lic@127.0.0.1/licensing"
        );
        assert_eq!(redact("postgres://127.0.0.1/x"), "postgres://127.0.0.1/x");
        assert_eq!(redact("postgres://a:b:c@h/p@q"), "postgres://a:****@h/p@q");
    }
}
