//! The database's layout and its migrations.
//!
//! Every change of the layout is a numbered migration, applied in order inside one
//! transaction each, and recorded in `schema_migrations` (version, when, what). At start the
//! portal applies the migrations the file lacks; a file whose newest version is above
//! [`SCHEMA_VERSION`] was written by a newer portal and is refused, so an older portal
//! never misreads it.

use rusqlite::{Connection, OptionalExtension};

/// The layout this code reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

/// One step of the layout: its version, what it adds, and its SQL.
struct Migration {
    version: u32,
    description: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "sessions, installations, files, pending files, updates, event logs",
        sql: "
            CREATE TABLE sessions (
                token_sha256 BLOB PRIMARY KEY,
                user TEXT NOT NULL,
                access TEXT NOT NULL,
                expires_at INTEGER NOT NULL
            );
            CREATE TABLE installations (
                portal_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                last_contact INTEGER
            );
            CREATE TABLE files (
                sha256 TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                stored_at INTEGER NOT NULL
            );
            CREATE TABLE pending_files (
                user TEXT NOT NULL,
                portal_id TEXT NOT NULL,
                instance INTEGER NOT NULL,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL REFERENCES files(sha256),
                uploaded_at INTEGER NOT NULL,
                PRIMARY KEY (user, portal_id, instance)
            );
            CREATE TABLE updates (
                commandid TEXT PRIMARY KEY,
                portal_id TEXT NOT NULL,
                instance INTEGER NOT NULL,
                serial TEXT NOT NULL,
                user TEXT NOT NULL,
                file_name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                requested_at INTEGER NOT NULL,
                job INTEGER,
                state TEXT,
                finished INTEGER NOT NULL,
                record TEXT NOT NULL
            );
            CREATE INDEX updates_by_battery ON updates (portal_id, instance, requested_at);
            CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                portal_id TEXT NOT NULL,
                serial TEXT NOT NULL,
                job INTEGER,
                at INTEGER NOT NULL,
                digest BLOB NOT NULL,
                event TEXT NOT NULL,
                received_at INTEGER NOT NULL,
                UNIQUE (portal_id, serial, digest)
            );
            CREATE INDEX events_by_battery ON events (portal_id, serial, at);
        ",
    },
    Migration {
        version: 2,
        description: "diagnostics snapshots, last device list, file use times, archived updates",
        sql: "
            CREATE TABLE diagnostics (
                portal_id TEXT NOT NULL,
                job INTEGER NOT NULL,
                serial TEXT,
                reason TEXT NOT NULL,
                taken_at INTEGER NOT NULL,
                bundle TEXT NOT NULL,
                PRIMARY KEY (portal_id, job)
            );
            ALTER TABLE installations ADD COLUMN devices TEXT;
            ALTER TABLE files ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
            UPDATE files SET last_used_at = stored_at;
            ALTER TABLE updates ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
            UPDATE updates SET archived = finished;
        ",
    },
];

/// Why the layout could not be brought to [`SCHEMA_VERSION`].
#[derive(Debug)]
pub enum SchemaError {
    /// The file holds tables but no `schema_migrations`: it is not a portal database.
    Foreign,
    /// The file was written by a newer portal.
    Newer(u32),
    /// SQLite failed.
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(e: rusqlite::Error) -> SchemaError {
        SchemaError::Sql(e)
    }
}

/// The newest migration applied to `conn`'s file (0 for an empty file).
pub fn current_version(conn: &Connection) -> Result<u32, SchemaError> {
    let has_table: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            [],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !has_table {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        return if tables == 0 {
            Ok(0)
        } else {
            Err(SchemaError::Foreign)
        };
    }
    let v: Option<i64> = conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    Ok(v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0))
}

/// Applies every migration `conn`'s file lacks, each in its own transaction; returns the
/// version found before.
pub fn migrate(conn: &mut Connection, now_ms: u64) -> Result<u32, SchemaError> {
    let found = current_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(SchemaError::Newer(found));
    }
    if found == 0 {
        conn.execute_batch(
            "CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_at INTEGER NOT NULL,
                description TEXT NOT NULL
            );",
        )?;
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at, description) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, now_ms as i64, m.description],
        )?;
        tx.commit()?;
        tracing::info!(
            version = m.version,
            what = m.description,
            "portal database migrated"
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_current_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
        }
        assert_eq!(MIGRATIONS.last().unwrap().version, SCHEMA_VERSION);
    }

    #[test]
    fn an_empty_file_gets_every_migration_and_a_second_run_changes_nothing() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut c, 1).unwrap(), 0);
        assert_eq!(current_version(&c).unwrap(), SCHEMA_VERSION);
        assert_eq!(migrate(&mut c, 2).unwrap(), SCHEMA_VERSION);
        let rows: i64 = c
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, i64::from(SCHEMA_VERSION));
    }

    #[test]
    fn a_foreign_or_newer_file_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(matches!(migrate(&mut c, 1), Err(SchemaError::Foreign)));
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, 1).unwrap();
        c.execute(
            "INSERT INTO schema_migrations VALUES (99, 0, 'from the future')",
            [],
        )
        .unwrap();
        assert!(matches!(migrate(&mut c, 1), Err(SchemaError::Newer(99))));
    }
}
