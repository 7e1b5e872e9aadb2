//! Organizations, their API keys (the accounts) and the append-only ledger beside the running
//! balances.
//!
//! Money moves in one place per key: a live key's organization row, or a test key's own row
//! (play money). Every statement that moves it locks the key row first, then the
//! organization row, so two transactions never wait on each other in a cycle.

use async_trait::async_trait;
use rand::RngCore;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::writer::WriteTransaction;
use super::SqlStore;
use crate::ids::{AccountId, OrgId, TaskId};
use crate::store::keys::new_secret;
use crate::store::{
    hash_key, now_ms, Account, AccountStore, KeyMode, KeySpec, KeyStatus, KeyUpdate,
    KeyUpdateRefused, LedgerKind, NewKey, NewOrganization, Organization, StoreError,
};

/// Appends one entry for a key and moves the money it spends by `usd_micros` (already
/// signed), in the caller's transaction. Entries of a task also move the key's committed
/// amount (what its cap bounds) and, for a charge, its used amount.
pub(super) async fn append_ledger(
    tx: &mut WriteTransaction,
    account_id: &AccountId,
    task_id: Option<&TaskId>,
    kind: LedgerKind,
    usd_micros: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "UPDATE api_keys SET \
         balance_usd_micros = balance_usd_micros + CASE WHEN mode = 'test' THEN $1 ELSE 0 END, \
         committed_usd_micros = committed_usd_micros - CASE WHEN $2 = 'top_up' THEN 0 ELSE $1 END, \
         used_usd_micros = used_usd_micros - CASE WHEN $2 = 'charge' THEN $1 ELSE 0 END \
         WHERE id = $3 RETURNING organization_id, mode",
    )
    .bind(usd_micros)
    .bind(kind.as_str())
    .bind(account_id)
    .fetch_one(&mut **tx)
    .await?;
    let organization: OrgId = row.try_get("organization_id")?;
    if KeyMode::parse(row.try_get("mode")?)? == KeyMode::Live {
        move_organization_balance(tx, &organization, usd_micros).await?;
    }
    insert_entry(
        tx,
        &organization,
        Some(account_id),
        task_id,
        kind,
        usd_micros,
    )
    .await
}

async fn move_organization_balance(
    tx: &mut WriteTransaction,
    organization: &OrgId,
    usd_micros: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "UPDATE organizations SET balance_usd_micros = balance_usd_micros + $1 WHERE id = $2 \
         RETURNING balance_usd_micros",
    )
    .bind(usd_micros)
    .bind(organization)
    .fetch_optional(&mut **tx)
    .await?)
}

async fn insert_entry(
    tx: &mut WriteTransaction,
    organization: &OrgId,
    account_id: Option<&AccountId>,
    task_id: Option<&TaskId>,
    kind: LedgerKind,
    usd_micros: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ledger (organization_id, account_id, task_id, kind, usd_micros, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(organization)
    .bind(account_id)
    .bind(task_id)
    .bind(kind.as_str())
    .bind(usd_micros)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn account_from_row(row: &AnyRow) -> Result<Account, StoreError> {
    let models: String = row.try_get("models")?;
    Ok(Account {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        mode: KeyMode::parse(row.try_get::<&str, _>("mode")?)?,
        balance_usd_micros: row.try_get("spendable_usd_micros")?,
        created_at_ms: row.try_get("created_at")?,
        status: KeyStatus::parse(row.try_get::<&str, _>("status")?)?,
        requests_per_second: limit(row, "requests_per_second")?,
        max_concurrent_tasks: limit(row, "max_concurrent_tasks")?,
        limit_usd_micros: row.try_get("limit_usd_micros")?,
        used_usd_micros: row.try_get("used_usd_micros")?,
        models: serde_json::from_str(&models)
            .map_err(|e| StoreError::Corrupt(format!("models of a key: {e}")))?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms")?,
    })
}

fn limit(row: &AnyRow, column: &str) -> Result<Option<u32>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} {n}"))))
        .transpose()
}

/// A key with the money it can spend, read in one statement.
const ACCOUNT_SELECT: &str = "SELECT k.id, k.organization_id, k.name, k.key_prefix, k.mode, \
    CASE WHEN k.mode = 'live' THEN o.balance_usd_micros ELSE k.balance_usd_micros END \
    AS spendable_usd_micros, k.created_at, k.status, k.requests_per_second, \
    k.max_concurrent_tasks, k.limit_usd_micros, k.used_usd_micros, k.models, k.expires_at_ms, \
    k.last_used_at_ms FROM api_keys k JOIN organizations o ON o.id = k.organization_id";

fn organization_from_row(row: &AnyRow) -> Result<Organization, StoreError> {
    Ok(Organization {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        balance_usd_micros: row.try_get("balance_usd_micros")?,
        total_recharge_usd_micros: row.try_get("recharged")?,
        total_used_usd_micros: row.try_get("used")?,
        has_management_token: row.try_get::<Option<&str>, _>("token_prefix")?.is_some(),
        created_at_ms: row.try_get("created_at")?,
    })
}

/// An organization with its totals. Live money only: a test key's play money is its own.
/// (SUM of BIGINT is NUMERIC on PostgreSQL; the casts keep one integer type on both.)
const ORGANIZATION_SELECT: &str = "SELECT o.id, o.name, o.balance_usd_micros, o.token_prefix, \
    o.created_at, \
    CAST(COALESCE((SELECT SUM(l.usd_micros) FROM ledger l LEFT JOIN api_keys k ON k.id = l.account_id \
      WHERE l.organization_id = o.id AND l.kind = 'top_up' \
      AND (l.account_id IS NULL OR k.mode = 'live')), 0) AS BIGINT) AS recharged, \
    CAST(COALESCE((SELECT SUM(k.used_usd_micros) FROM api_keys k \
      WHERE k.organization_id = o.id AND k.mode = 'live'), 0) AS BIGINT) AS used \
    FROM organizations o";

fn models_json(models: &[String]) -> String {
    serde_json::to_string(models).unwrap_or_else(|_| "[]".into())
}

impl SqlStore {
    async fn insert_organization(
        &self,
        tx: &mut WriteTransaction,
        name: &str,
        token: Option<&str>,
    ) -> Result<OrgId, StoreError> {
        let id = OrgId::mint();
        sqlx::query(
            "INSERT INTO organizations (id, name, token_hash, token_prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name)
        .bind(token.map(hash_key))
        .bind(token.map(token_prefix))
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(id)
    }

    async fn fund_organization(
        tx: &mut WriteTransaction,
        organization: &OrgId,
        usd_micros: i64,
    ) -> Result<Option<i64>, StoreError> {
        let Some(balance) = move_organization_balance(tx, organization, usd_micros).await? else {
            return Ok(None);
        };
        insert_entry(tx, organization, None, None, LedgerKind::TopUp, usd_micros).await?;
        Ok(Some(balance))
    }
}

fn token_prefix(secret: &str) -> String {
    secret.chars().take(12).collect()
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_organization(
        &self,
        name: &str,
        opening_balance_usd_micros: i64,
    ) -> Result<NewOrganization, StoreError> {
        let token = new_secret("sg_mgmt_");
        let mut tx = self.writer.begin().await?;
        let id = self
            .insert_organization(&mut tx, name, Some(&token))
            .await?;
        if opening_balance_usd_micros > 0 {
            Self::fund_organization(&mut tx, &id, opening_balance_usd_micros).await?;
        }
        tx.commit().await?;
        let organization = self
            .organization(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("new organization vanished".into()))?;
        Ok(NewOrganization {
            organization,
            management_token: token,
        })
    }

    async fn rotate_management_token(&self, id: &OrgId) -> Result<Option<String>, StoreError> {
        let token = new_secret("sg_mgmt_");
        let done = sqlx::query(
            "UPDATE organizations SET token_hash = $1, token_prefix = $2 WHERE id = $3",
        )
        .bind(hash_key(&token))
        .bind(token_prefix(&token))
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok((done.rows_affected() == 1).then_some(token))
    }

    async fn organization_by_token(&self, token: &str) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query(super::sql!(
            self.dialect,
            format!("{ORGANIZATION_SELECT} WHERE o.token_hash = $1")
        ))
        .bind(hash_key(token))
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(organization_from_row).transpose()
    }

    async fn organization(&self, id: &OrgId) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query(super::sql!(
            self.dialect,
            format!("{ORGANIZATION_SELECT} WHERE o.id = $1")
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(organization_from_row).transpose()
    }

    async fn list_organizations(&self) -> Result<Vec<Organization>, StoreError> {
        let rows = sqlx::query(super::sql!(
            self.dialect,
            format!("{ORGANIZATION_SELECT} ORDER BY o.created_at, o.id")
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(organization_from_row).collect()
    }

    async fn top_up_organization(
        &self,
        id: &OrgId,
        usd_micros: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let balance = Self::fund_organization(&mut tx, id, usd_micros).await?;
        if balance.is_some() {
            tx.commit().await?;
        }
        Ok(balance)
    }

    async fn organization_ledger_sum(&self, id: &OrgId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(l.usd_micros), 0) AS BIGINT) FROM ledger l \
             LEFT JOIN api_keys k ON k.id = l.account_id \
             WHERE l.organization_id = $1 AND (l.account_id IS NULL OR k.mode = 'live')",
        )
        .bind(id)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn create_key(&self, spec: &KeySpec<'_>) -> Result<NewKey, StoreError> {
        let secret = new_secret(&format!("sg_{}_", spec.mode.as_str()));
        let id = AccountId::mint();
        let mut tx = self.writer.begin().await?;
        let organization = match spec.organization {
            Some(organization) => organization.clone(),
            None => self.insert_organization(&mut tx, spec.name, None).await?,
        };
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, organization_id, name, key_hash, key_prefix, mode, \
             limit_usd_micros, models, expires_at_ms, created_at) \
             SELECT $1, id, $2, $3, $4, $5, $6, $7, $8, $9 FROM organizations WHERE id = $10",
        )
        .bind(&id)
        .bind(spec.name)
        .bind(hash_key(&secret))
        .bind(token_prefix(&secret))
        .bind(spec.mode.as_str())
        .bind(spec.limit_usd_micros)
        .bind(models_json(spec.models))
        .bind(spec.expires_at_ms)
        .bind(now_ms())
        .bind(&organization)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::UnknownOrganization(organization));
        }
        if spec.opening_balance_usd_micros > 0 {
            match spec.mode {
                KeyMode::Live => {
                    Self::fund_organization(
                        &mut tx,
                        &organization,
                        spec.opening_balance_usd_micros,
                    )
                    .await?;
                }
                KeyMode::Test => {
                    append_ledger(
                        &mut tx,
                        &id,
                        None,
                        LedgerKind::TopUp,
                        spec.opening_balance_usd_micros,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        let account = self
            .account(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("new key vanished".into()))?;
        Ok(NewKey { account, secret })
    }

    async fn account_by_secret(&self, secret: &str) -> Result<Option<Account>, StoreError> {
        let hash = hash_key(secret);
        let row = sqlx::query(super::sql!(
            self.dialect,
            format!("{ACCOUNT_SELECT} WHERE k.key_hash = $1")
        ))
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(super::sql!(
            self.dialect,
            format!("{ACCOUNT_SELECT} WHERE k.id = $1")
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(super::sql!(
            self.dialect,
            format!("{ACCOUNT_SELECT} ORDER BY k.created_at, k.id")
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn count_keys(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.reader)
            .await?)
    }

    async fn organization_keys(
        &self,
        organization: &OrgId,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Account>, i64), StoreError> {
        let rows = sqlx::query(super::sql!(
            self.dialect,
            format!(
                "{ACCOUNT_SELECT} WHERE k.organization_id = $1 \
                 ORDER BY k.created_at, k.id LIMIT $2 OFFSET $3"
            )
        ))
        .bind(organization)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.reader)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE organization_id = $1")
                .bind(organization)
                .fetch_one(&self.reader)
                .await?;
        Ok((
            rows.iter()
                .map(account_from_row)
                .collect::<Result<_, _>>()?,
            total,
        ))
    }

    async fn organization_key(
        &self,
        organization: &OrgId,
        id: &AccountId,
    ) -> Result<Option<Account>, StoreError> {
        // PostgreSQL text cannot hold NUL, so no stored id has one: nothing to look up.
        if id.as_str().contains('\0') {
            return Ok(None);
        }
        let row = sqlx::query(super::sql!(
            self.dialect,
            format!("{ACCOUNT_SELECT} WHERE k.id = $1 AND k.organization_id = $2")
        ))
        .bind(id)
        .bind(organization)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn update_key(
        &self,
        organization: &OrgId,
        id: &AccountId,
        update: &KeyUpdate,
    ) -> Result<Option<Result<Account, KeyUpdateRefused>>, StoreError> {
        let Some(current) = self.organization_key(organization, id).await? else {
            return Ok(None);
        };
        if current.status == KeyStatus::Revoked {
            return Ok(Some(Err(KeyUpdateRefused::Revoked)));
        }
        // Each field is set only when given (a flag per field, so a given null clears it),
        // and never on a key revoked in the meantime.
        let done = sqlx::query(
            "UPDATE api_keys SET \
             name = CASE WHEN $1 THEN $2 ELSE name END, \
             status = CASE WHEN $3 THEN $4 ELSE status END, \
             revoked_at = CASE WHEN $3 AND $4 = 'revoked' THEN $13 ELSE revoked_at END, \
             limit_usd_micros = CASE WHEN $5 THEN $6 ELSE limit_usd_micros END, \
             models = CASE WHEN $7 THEN $8 ELSE models END, \
             expires_at_ms = CASE WHEN $9 THEN $10 ELSE expires_at_ms END \
             WHERE id = $11 AND organization_id = $12 AND status <> 'revoked'",
        )
        .bind(update.name.is_some())
        .bind(update.name.as_deref())
        .bind(update.status.is_some())
        .bind(update.status.map(KeyStatus::as_str))
        .bind(update.limit_usd_micros.is_some())
        .bind(update.limit_usd_micros.flatten())
        .bind(update.models.is_some())
        .bind(update.models.as_deref().map(models_json))
        .bind(update.expires_at_ms.is_some())
        .bind(update.expires_at_ms.flatten())
        .bind(id)
        .bind(organization)
        .bind(now_ms())
        .execute(&mut *self.writer.connection().await?)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Some(Err(KeyUpdateRefused::Revoked)));
        }
        Ok(self.organization_key(organization, id).await?.map(Ok))
    }

    async fn note_key_used(&self, id: &AccountId, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at_ms = $1 WHERE id = $2 \
             AND (last_used_at_ms IS NULL OR last_used_at_ms < $1)",
        )
        .bind(at_ms)
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(())
    }

    async fn set_key_limits(
        &self,
        id: &AccountId,
        requests_per_second: Option<u32>,
        max_concurrent_tasks: Option<u32>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET requests_per_second = $1, max_concurrent_tasks = $2 WHERE id = $3",
        )
        .bind(requests_per_second.map(i64::from))
        .bind(max_concurrent_tasks.map(i64::from))
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_key(&self, id: &AccountId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET status = 'revoked', revoked_at = $1 \
             WHERE id = $2 AND status <> 'revoked'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn top_up(&self, id: &AccountId, usd_micros: i64) -> Result<Option<i64>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Ok(None);
        }
        append_ledger(&mut tx, id, None, LedgerKind::TopUp, usd_micros).await?;
        tx.commit().await?;
        Ok(self.account(id).await?.map(|a| a.balance_usd_micros))
    }

    async fn ledger_sum(&self, account_id: &AccountId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(l.usd_micros), 0) AS BIGINT) FROM api_keys k \
             JOIN ledger l ON (k.mode = 'test' AND l.account_id = k.id) \
               OR (k.mode = 'live' AND l.organization_id = k.organization_id) \
             LEFT JOIN api_keys lk ON lk.id = l.account_id \
             WHERE k.id = $1 AND (k.mode = 'test' OR l.account_id IS NULL OR lk.mode = 'live')",
        )
        .bind(account_id)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn ledger_entries_for_task(
        &self,
        task_id: &TaskId,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT kind, usd_micros FROM ledger WHERE task_id = $1 ORDER BY id")
                .bind(task_id)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn ledger_entries_for_account(&self, account_id: &AccountId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn webhook_secret(&self, account_id: &AccountId) -> Result<String, StoreError> {
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        // The first writer's secret stands; later callers read it back.
        sqlx::query(
            "UPDATE api_keys SET webhook_secret = $1 WHERE id = $2 AND webhook_secret IS NULL",
        )
        .bind(format!("whsec_{}", hex::encode(bytes)))
        .bind(account_id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        sqlx::query_scalar("SELECT webhook_secret FROM api_keys WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no account {account_id}")))
    }

    async fn set_webhook_url(
        &self,
        account_id: &AccountId,
        url: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET webhook_url = $1 WHERE id = $2")
            .bind(url)
            .bind(account_id)
            .execute(&mut *self.writer.connection().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
