//! The schemas' histories, compiled into the binary.
//!
//! sqlx's `migrate!` macro would embed the same files, but it needs sqlx's compile-time
//! machinery, a second build of both database drivers for the compiler, in every build of the
//! project. `include_str!` embeds them for nothing; a test checks each list against its folder
//! as sqlx itself reads it, so a file left out of a list, or a list that strays from sqlx's
//! naming rules, fails the tests.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

/// One backend's migrations in order: each file's name and its SQL.
macro_rules! folder {
    ($dir:literal: $($file:literal),+ $(,)?) => {
        Folder(&[$((
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $dir, "/", $file)),
        )),+])
    };
}

pub(crate) const SQLITE: Folder = folder!("sqlite":
    "0001_initial.sql",
    "0002_upstream.sql",
    "0003_idempotency.sql",
    "0004_key_limits.sql",
    "0005_webhooks.sql",
    "0006_in_flight_counters.sql",
    "0007_upstream_reconcile.sql",
    "0008_retention.sql",
    "0009_organizations.sql",
    "0010_materials.sql",
    "0011_request_id.sql",
    "0012_upstream_polls.sql",
    "0013_vendor_usage.sql",
    "0014_idempotency_keys_by_task.sql",
);

pub(crate) const POSTGRES: Folder = folder!("postgres":
    "0001_initial.sql",
    "0002_retention.sql",
    "0003_organizations.sql",
    "0004_materials.sql",
    "0005_request_id.sql",
    "0006_task_changes.sql",
    "0007_idempotency_deferred.sql",
    "0008_upstream_polls.sql",
    "0009_task_creations.sql",
    "0010_vendor_usage.sql",
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Folder(&'static [(&'static str, &'static str)]);

impl Folder {
    pub(crate) async fn migrator(self) -> Result<Migrator, MigrateError> {
        Migrator::new(self).await
    }

    /// The history before `version`: the schema an older release left.
    #[cfg(test)]
    pub(crate) fn before(self, version: i64) -> Folder {
        let older = self
            .0
            .iter()
            .take_while(|(name, _)| {
                name.split_once('_')
                    .and_then(|(number, _)| number.parse::<i64>().ok())
                    .is_some_and(|number| number < version)
            })
            .count();
        Folder(&self.0[..older])
    }

    /// Each file as sqlx reads one: `<version>_<description>.sql`, underscores in the
    /// description read as spaces, and `-- no-transaction` on the first line running it
    /// outside a transaction.
    fn migrations(self) -> Result<Vec<Migration>, BoxDynError> {
        self.0
            .iter()
            .map(|&(name, sql)| {
                let (version, rest) = name
                    .split_once('_')
                    .ok_or_else(|| format!("migration {name} has no version prefix"))?;
                let description = rest.trim_end_matches(".sql").replace('_', " ");
                Ok(Migration::new(
                    version.parse()?,
                    Cow::Owned(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    sql.starts_with("-- no-transaction"),
                ))
            })
            .collect()
    }
}

impl<'s> MigrationSource<'s> for Folder {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { self.migrations() })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    async fn same_as_sqlx_reads(folder: Folder, dir: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let read = Migrator::new(path.as_path()).await.unwrap();
        let embedded = folder.migrator().await.unwrap();
        let summary = |migrator: &Migrator| -> Vec<_> {
            migrator
                .iter()
                .map(|m| {
                    (
                        m.version,
                        m.description.to_string(),
                        m.migration_type,
                        m.checksum.to_vec(),
                        m.no_tx,
                    )
                })
                .collect()
        };
        assert_eq!(summary(&embedded), summary(&read), "migrations/{dir}");
    }

    #[tokio::test]
    async fn each_list_is_its_folder_as_sqlx_reads_it() {
        same_as_sqlx_reads(SQLITE, "sqlite").await;
        same_as_sqlx_reads(POSTGRES, "postgres").await;
    }
}
