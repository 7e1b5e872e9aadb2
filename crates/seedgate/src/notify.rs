//! The notifier: delivers webhooks queued when tasks end. Each delivery POSTs the current task
//! object, signed `Seedgate-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, and
//! is retried with exponential backoff and jitter until a 2xx answer or its attempts run out
//! (about a day and a half by default). Deliveries are rows: a restart resumes them.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tracing::{info, warn, Instrument};

use crate::assets::ResultLinks;
use seedgate_contract::{Catalog, RequestEcho, WebhookFormat};

use crate::config::WebhooksConfig;
use crate::fetch::{FetchError, Fetcher};
use crate::openrouter_view;
use crate::signing::timestamped_signature;
use crate::store::{now_ms, Delivery, Store, StoreError};
use crate::task_view::render_task;

pub struct Notifier {
    store: Store,
    links: ResultLinks,
    catalog: Arc<Catalog>,
    fetcher: Fetcher,
    base_url: String,
    config: WebhooksConfig,
    owner: String,
}

/// `t=<unix>,v1=<hex>`: what receivers verify (see docs/webhooks.md).
pub fn signature_header(secret: &str, timestamp: u64, body: &str) -> String {
    timestamped_signature(secret, timestamp, ".", body)
}

impl Notifier {
    pub fn new(
        store: Store,
        links: ResultLinks,
        catalog: Arc<Catalog>,
        fetcher: Fetcher,
        base_url: String,
        config: WebhooksConfig,
    ) -> Self {
        Self {
            store,
            links,
            catalog,
            fetcher,
            base_url,
            config,
            owner: format!("notifier_{}", ulid::Ulid::new()),
        }
    }

    pub fn spawn(self: Arc<Self>, idle: Duration) {
        tokio::spawn(async move {
            loop {
                match self.deliver_one().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "webhook step failed"),
                }
                tokio::time::sleep(idle).await;
            }
        });
    }

    /// Attempts one due delivery; false when none is due.
    pub async fn deliver_one(&self) -> Result<bool, StoreError> {
        let Some(delivery) = self.store.claim_delivery(&self.owner, 60_000).await? else {
            return Ok(false);
        };
        let span = tracing::info_span!("webhook", task_id = %delivery.task_id, attempt = delivery.attempts);
        self.attempt(delivery).instrument(span).await?;
        Ok(true)
    }

    async fn attempt(&self, delivery: Delivery) -> Result<(), StoreError> {
        let Some(task) = self.store.task(&delivery.task_id).await? else {
            return self
                .store
                .record_delivery(
                    delivery.id,
                    &self.owner,
                    false,
                    None,
                    Some("task vanished"),
                    None,
                )
                .await;
        };
        let now_s = (now_ms() / 1000) as u64;
        let secret = self.store.webhook_secret(&delivery.account_id).await?;
        // A surface's own webhook shape is for the task's own `callback_url`; the account-wide
        // endpoint always gets the platform's.
        let format = serde_json::from_str::<RequestEcho>(&task.request_json)
            .ok()
            .filter(|echo| echo.callback_url.as_deref() == Some(delivery.url.as_str()))
            .and_then(|echo| echo.webhook_format);
        let mut headers = vec![
            ("seedgate-event", delivery.event.clone()),
            ("seedgate-delivery", delivery.id.to_string()),
            (
                "user-agent",
                concat!("seedgate-webhooks/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
        ];
        let body = match format {
            None => {
                let body = serde_json::to_string(&render_task(
                    &task,
                    &self.links,
                    &self.catalog,
                    &self.base_url,
                    now_s,
                ))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                headers.push((
                    "seedgate-signature",
                    signature_header(&secret, now_s, &body),
                ));
                body
            }
            Some(WebhookFormat::OpenRouter) => {
                let body =
                    openrouter_view::webhook_event(&task, &self.links, &self.base_url, now_s)
                        .to_string();
                headers.push((
                    "x-openrouter-signature",
                    openrouter_view::signature_header(&secret, now_s, &body),
                ));
                // OpenRouter's receivers drop a redelivery by `<job id>-<status>`.
                let status = openrouter_view::job_status(&task);
                headers.push((
                    "x-openrouter-idempotency-key",
                    format!("{}-{status}", task.id),
                ));
                body
            }
        };
        let outcome = self.fetcher.post_json(&delivery.url, body, &headers).await;
        let (status, error) = match &outcome {
            Ok(status) => (Some(*status), None),
            Err(e) => (None, Some(format!("webhook {e}"))),
        };
        // A refusal by the outbound policy can never change: retrying only waits for nothing.
        let refused_by_policy = matches!(
            outcome,
            Err(FetchError::Forbidden(_) | FetchError::Unsupported)
        );
        if status.is_some_and(|s| (200..300).contains(&s)) {
            info!("webhook delivered");
            return self
                .store
                .record_delivery(delivery.id, &self.owner, true, status, None, None)
                .await;
        }
        let retry_at = (!refused_by_policy && delivery.attempts < self.config.max_attempts)
            .then(|| now_ms() + self.backoff_ms(delivery.attempts));
        warn!(
            ?status,
            error = error.as_deref().unwrap_or(""),
            give_up = retry_at.is_none(),
            "webhook not accepted"
        );
        self.store
            .record_delivery(
                delivery.id,
                &self.owner,
                false,
                status,
                error.as_deref(),
                retry_at,
            )
            .await
    }

    fn backoff_ms(&self, attempts: i64) -> i64 {
        let base = self.config.retry_base_ms as i64;
        let delay = base
            .saturating_mul(1 << attempts.clamp(0, 20))
            .min(self.config.max_retry_delay_ms as i64);
        delay + rand::thread_rng().gen_range(0..=delay / 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently with Python's hmac.
        assert_eq!(
            signature_header("whsec_test", 1_700_000_000, "{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
