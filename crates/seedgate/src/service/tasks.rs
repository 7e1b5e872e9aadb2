//! Tasks: create (validated, priced, stored with their reservation), read, list, cancel, and
//! the upstreams' hints that a task changed.

use std::sync::Arc;

use seedgate_contract::drafts::check_draft;
use seedgate_contract::{
    parse_create_request, pricing, ApiError, AspectRatio, Catalog, CreateRequest, DraftSource,
    DraftState, DraftUpstream, ErrorCode, FinalRequest, RequestEcho, SandboxScenario, VideoJob,
    WebhookFormat,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::{internal, usd, usd_number};
use crate::assets::ResultLinks;
use crate::engine::StoredResult;
use crate::fetch::Fetcher;
use crate::ids::{MaterialId, TaskId};
use crate::inputs::{input_summaries, media_inputs};
use crate::providers::{task_seed, CancelOutcome, Registry, UpstreamRef};
use crate::store::materials::{AssetType, MaterialStatus};
use crate::store::{
    now_ms, Account, Created, IdempotencyKey, KeyMode, NewTask, PublicStatus, Store, StoreError,
    TaskFilter, TaskRecord, TaskState, UpstreamPhase,
};
use crate::telemetry::{RequestId, Telemetry};

/// A create request checked and priced, before anything is stored.
pub struct Priced {
    pub job: VideoJob,
    /// The provider that would serve it.
    pub provider: &'static str,
    /// What it would reserve, and how that was counted.
    pub quote: pricing::Quote,
}

/// What a create carries beside its body.
pub struct CreateContext<'a> {
    /// `Idempotency-Key`, unchecked.
    pub idempotency_key: Option<&'a str>,
    /// The request's id, for the log lines of the task's work.
    pub request_id: Option<&'a RequestId>,
    /// `Seedgate-Sandbox-Scenario`, as sent: read for test keys, ignored for live ones.
    pub scenario: Option<&'a str>,
    /// The shape of the task's webhooks, when the surface it was made on has its own.
    pub webhook_format: Option<WebhookFormat>,
}

/// One page of `GET /v1/tasks`.
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    pub has_more: bool,
}

const MAX_PAGE: i64 = 100;

/// The shape of the input an `adaptive` job follows, when the request carries it inline: the
/// video is then quoted and reserved at the size it will be made at, as the provider reads the
/// same bytes. `None` for a URL or an unreadable input (the tier's largest size is reserved).
fn inline_shape(job: &VideoJob) -> Option<(u32, u32)> {
    if job.aspect_ratio != AspectRatio::Adaptive {
        return None;
    }
    let (input, is_video) = job.first_visual_input()?;
    let bytes = input.data_bytes()?;
    if is_video {
        let info = seedgate_media::probe_mp4(&bytes).ok()?;
        Some((info.width, info.height))
    } else {
        seedgate_media::image_dimensions(&bytes).ok()
    }
}

fn task_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::AsyncTaskNotFound,
        "Task not found or no longer available.",
    )
}

pub struct TaskService {
    pub(super) store: Store,
    pub(super) catalog: Arc<Catalog>,
    /// The outbound guard, consulted at create for targets it would never reach.
    pub(super) fetcher: Fetcher,
    /// Signs the result URLs of task objects and checks upstream callbacks.
    pub(super) links: ResultLinks,
    pub(super) providers: Arc<Registry>,
    /// Wakes the engine for a new task.
    pub(super) engine_wake: Arc<Notify>,
    /// Wakes idle pollers when an upstream callback flags a task.
    pub(super) poll_wake: Arc<Notify>,
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) task_deadline_ms: i64,
    pub(super) public_url: Option<String>,
}

impl TaskService {
    /// Signs the links of the task objects this service's tasks are shown as.
    pub fn links(&self) -> &ResultLinks {
        &self.links
    }

    /// The models, for what a task object shows of its model (a draft's validity).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The configured address clients reach us at, when it is not read from the request.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Validates and prices a create request as a create would, storing nothing: the job, the
    /// provider that would serve it and what it would reserve.
    pub async fn price(&self, account: &Account, body: &[u8]) -> Result<Priced, ApiError> {
        let job = match parse_create_request(&self.catalog, body)? {
            CreateRequest::Job(job) => *job,
            CreateRequest::Final(request) => self.final_job(account, &request).await?,
        };
        if !account.may_use(&job.model) {
            return Err(ApiError::new(
                ErrorCode::ModelNotAllowed,
                format!(
                    "This key may use only {}; its organization can change that.",
                    account.models.join(", ")
                ),
            )
            .with_param("model"));
        }
        self.check_targets(&job)?;
        self.check_materials(account, &job).await?;
        let provider = self
            .providers
            .route(account.mode == KeyMode::Live, &job)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NoChannelForRequest,
                    format!(
                        "No configured channel serves {} at {}.",
                        job.model,
                        job.resolution.as_str()
                    ),
                )
                .with_param("model")
            })?;
        let source = self.source_result(account, &job).await?;
        let input_video_millis = source
            .as_ref()
            .map(|r| (r.duration * 1000.0).round() as u64);
        let input_shape = match &source {
            Some(source) => Some((source.width, source.height)),
            None => inline_shape(&job),
        };
        let quote = pricing::quote(&self.catalog, &job, input_video_millis, input_shape)?;
        Ok(Priced {
            job,
            provider,
            quote,
        })
    }

    /// Validates, prices and stores a task with its reservation; nothing is written on any error.
    /// With an idempotency key, a repeat of the same job returns the original task.
    pub async fn create_task(
        &self,
        account: &Account,
        body: &[u8],
        context: CreateContext<'_>,
    ) -> Result<Created, ApiError> {
        let key = context
            .idempotency_key
            .map(check_idempotency_key)
            .transpose()?;
        let Priced {
            mut job,
            provider,
            quote,
        } = self.price(account, body).await?;
        // Only a test key's task, which the sandbox always serves, plays a scenario out.
        if account.mode == KeyMode::Test {
            job.scenario = context.scenario.map(SandboxScenario::parse).transpose()?;
        }
        let created_at_ms = now_ms();
        let job_json = serde_json::to_string(&job)
            .map_err(|e| internal(StoreError::Corrupt(e.to_string())))?;
        // The parsed job, not the bytes, is what a repeat must match: the same job sent through
        // `/v1` and `/api/v3`, or with its fields in another order, is the same request.
        let request_hash = Sha256::digest(&job_json);
        let mut echo = self.echo(&job).await;
        echo.webhook_format = context.webhook_format;
        let request_json = serde_json::to_string(&echo)
            .map_err(|e| internal(StoreError::Corrupt(e.to_string())))?;
        let created = self
            .store
            .create_task(
                NewTask {
                    id: TaskId::mint(),
                    account_id: account.id.clone(),
                    model: job.model.clone(),
                    operation: job.operation.as_str().to_owned(),
                    provider: provider.to_owned(),
                    job_json,
                    request_json,
                    reserved_usd_micros: quote.cost.usd_micros,
                    estimated_tokens: quote.billed_tokens as i64,
                    deadline_at_ms: created_at_ms
                        + job
                            .scenario
                            .and_then(SandboxScenario::deadline_ms)
                            .unwrap_or(self.task_deadline_ms),
                    callback_url: job.callback_url.clone(),
                    request_id: context.request_id.map(|id| id.0.clone()),
                    not_before_ms: job
                        .scenario
                        .and_then(SandboxScenario::start_delay_ms)
                        .map(|delay| created_at_ms + delay),
                },
                key.map(|key| IdempotencyKey {
                    key,
                    request_hash: &request_hash,
                }),
            )
            .await;
        match created {
            Ok(created) => {
                if !created.replayed {
                    self.telemetry.task_created(&created.task.model);
                    self.engine_wake.notify_one();
                }
                Ok(created)
            }
            Err(StoreError::IdempotencyConflict) => Err(ApiError::new(
                ErrorCode::IdempotencyConflict,
                "This Idempotency-Key was already used with a different request in the last 24 hours.",
            )),
            Err(StoreError::InsufficientBalance {
                balance_usd_micros,
                required_usd_micros,
            }) => Err(ApiError::new(ErrorCode::InsufficientBalance, format!(
                    "This request needs up to ${} but the balance is ${}.",
                    usd(required_usd_micros),
                    usd(balance_usd_micros)
                ))
            .with_extra("estimated_cost_usd", usd_number(required_usd_micros))
            .with_extra("balance_usd", usd_number(balance_usd_micros))),
            Err(StoreError::KeyLimitExceeded {
                limit_usd_micros,
                committed_usd_micros,
                required_usd_micros,
            }) => Err(ApiError::new(ErrorCode::KeyLimitExceeded, format!(
                    "This request needs up to ${} but this key has ${} left of its ${} spending \
                     cap (charges plus what its unfinished tasks hold).",
                    usd(required_usd_micros),
                    usd((limit_usd_micros - committed_usd_micros).max(0)),
                    usd(limit_usd_micros)
                ))
            .with_extra("estimated_cost_usd", usd_number(required_usd_micros))
            .with_extra("limit_usd", usd_number(limit_usd_micros))),
            Err(e) => Err(internal(e)),
        }
    }

    /// What the task object shows was asked for, its inputs summed up; inline media is
    /// decoded and probed off the runtime.
    async fn echo(&self, job: &VideoJob) -> RequestEcho {
        let mut echo = job.echo();
        echo.inputs = if media_inputs(job)
            .iter()
            .any(|named| named.input.is_data_uri())
        {
            let job = job.clone();
            tokio::task::spawn_blocking(move || input_summaries(&job))
                .await
                .unwrap_or_default()
        } else {
            input_summaries(job)
        };
        echo
    }

    /// Refuses, before anything is stored, a webhook or input URL naming an address the
    /// outbound guard never reaches (loopback, private, metadata …): that answer cannot change
    /// later. Host names are judged when they are resolved.
    fn check_targets(&self, job: &VideoJob) -> Result<(), ApiError> {
        if let Some(forbidden) = job
            .callback_url
            .as_deref()
            .and_then(|url| self.fetcher.refusal(url))
        {
            return Err(ApiError::new(
                ErrorCode::InvalidCallbackUrl,
                format!("`callback_url`: {forbidden}; webhooks are never sent there."),
            )
            .with_param("callback_url"));
        }
        for named in media_inputs(job) {
            // Material assets are the server's own; `check_materials` looks them up.
            if named.input.asset_id().is_some() {
                continue;
            }
            // A data: URI names no host, and parsing one (tens of MB) would cost for nothing.
            if named.input.is_data_uri() {
                continue;
            }
            if let Some(forbidden) = self.fetcher.refusal(named.input.as_str()) {
                return Err(ApiError::new(
                    ErrorCode::InputUrlForbidden,
                    format!(
                        "`{}`: {forbidden}; inputs are never fetched from there.",
                        named.field
                    ),
                )
                .with_param(named.field));
            }
        }
        Ok(())
    }

    /// Every `asset://` input must name an ACTIVE image of the caller's organization's library.
    async fn check_materials(&self, account: &Account, job: &VideoJob) -> Result<(), ApiError> {
        for named in media_inputs(job) {
            let Some(id) = named.input.asset_id() else {
                continue;
            };
            let field = named.field;
            let asset = self
                .store
                .asset(&account.organization_id, &MaterialId::new(id))
                .await
                .map_err(internal)?;
            let refuse =
                |code, message: String| Err(ApiError::new(code, message).with_param(field));
            match asset {
                None => {
                    return refuse(
                        ErrorCode::AssetNotFound,
                        format!("`{field}`: no material asset `{id}` exists for this organization."),
                    )
                }
                Some(a) if a.status == MaterialStatus::Processing => {
                    return Err(ApiError::new(
                        ErrorCode::SeedanceMaterialPreparing,
                        format!("`{field}`: the material asset `{id}` is still being processed; retry once it is ACTIVE."),
                    )
                    .with_param(field))
                }
                Some(a) if a.status != MaterialStatus::Active => {
                    return refuse(
                        ErrorCode::AssetNotFound,
                        format!("`{field}`: the material asset `{id}` is {} and cannot be used.", a.status.as_str()),
                    )
                }
                Some(a) if a.asset_type != AssetType::Image => {
                    return refuse(
                        ErrorCode::AssetNotAnImage,
                        format!("`{field}` takes an image; the material asset `{id}` is {}.", a.asset_type.as_str()),
                    )
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// A final's job: the draft it names must be a completed, unexpired draft of this key and
    /// of the same model; the final renders that draft's request at its own resolution.
    async fn final_job(
        &self,
        account: &Account,
        request: &FinalRequest,
    ) -> Result<VideoJob, ApiError> {
        let id = TaskId::new(request.draft_task_id.as_str());
        let not_found = || {
            ApiError::new(
                ErrorCode::DraftTaskNotFound,
                format!("No task `{id}` exists for this key."),
            )
            .with_param("draft_task_id")
        };
        let draft = self
            .store
            .task_for_account(&account.id, &id)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let job_json = self.store.task_job(&id).await.map_err(internal)?;
        let Some(draft_job) = job_json
            .as_deref()
            .and_then(|json| serde_json::from_str::<VideoJob>(json).ok())
        else {
            // The sweep deleted the draft's files and the request with them.
            return Err(ApiError::new(
                ErrorCode::DraftTaskExpired,
                format!("The draft `{id}` is no longer kept; make a new draft."),
            )
            .with_param("draft_task_id"));
        };
        let model = self.catalog.model(&request.model).ok_or_else(|| {
            internal(StoreError::Corrupt(format!(
                "model {} vanished",
                request.model
            )))
        })?;
        let state = match (draft.state, draft.completed_at_ms) {
            (TaskState::Succeeded, Some(at_ms)) => DraftState::Completed { at_ms },
            (TaskState::Failed | TaskState::Expired, _) => DraftState::Failed,
            (TaskState::Cancelled, _) => DraftState::Cancelled,
            _ => DraftState::Unfinished,
        };
        check_draft(model, id.as_str(), &draft_job, state, now_ms())?;
        let made_seconds = draft
            .result_json
            .as_deref()
            .and_then(|r| serde_json::from_str::<StoredResult>(r).ok())
            .map(|r| r.duration.round() as u32);
        let upstream =
            draft
                .channel
                .as_ref()
                .zip(draft.upstream_id.as_ref())
                .map(|(channel, task_id)| DraftUpstream {
                    channel: channel.to_string(),
                    task_id: task_id.clone(),
                });
        let source = DraftSource {
            task_id: id.to_string(),
            provider: draft.provider.clone(),
            upstream,
        };
        request.job(&draft_job, made_seconds, task_seed(&id, &draft_job), source)
    }

    /// For video-extension of one of our tasks: the source must be this account's succeeded
    /// task; its real length prices the input, and its shape the output of an `adaptive` job.
    async fn source_result(
        &self,
        account: &Account,
        job: &VideoJob,
    ) -> Result<Option<StoredResult>, ApiError> {
        let Some(source_id) = job.inputs.source_task_id.clone().map(TaskId::new) else {
            return Ok(None);
        };
        let source = self
            .store
            .task_for_account(&account.id, &source_id)
            .await
            .map_err(internal)?;
        let not_usable = |message: &str| {
            ApiError::new(ErrorCode::SourceTaskNotUsable, message.to_owned()).with_param("task_id")
        };
        let Some(source) = source else {
            return Err(not_usable("No task with this id exists for this account."));
        };
        if source.state != TaskState::Succeeded {
            return Err(not_usable("Only a completed task can be extended."));
        }
        if self
            .links
            .retention
            .files_expired(&source, (now_ms() / 1000) as u64)
        {
            return Err(not_usable(
                "This task's files have expired, so it can no longer be extended.",
            ));
        }
        Ok(source
            .result_json
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok()))
    }

    pub async fn task(&self, account: &Account, id: &TaskId) -> Result<Arc<TaskRecord>, ApiError> {
        self.store
            .task_for_account(&account.id, id)
            .await
            .map_err(internal)?
            .ok_or_else(task_not_found)
    }

    /// Cancels while the task is `pending` (queued here, or still queued upstream); once it is
    /// generating or finished, `task_not_cancellable`.
    pub async fn cancel_task(
        &self,
        account: &Account,
        id: &TaskId,
    ) -> Result<TaskRecord, ApiError> {
        match self
            .store
            .cancel_queued_task(&account.id, id)
            .await
            .map_err(internal)?
        {
            None => Err(task_not_found()),
            Some((task, true)) => Ok(task),
            Some((task, false)) if task.state == TaskState::Cancelled => Ok(task),
            Some((task, false)) if self.cancel_upstream(account, &task).await? => {
                self.task(account, id).await.map(Arc::unwrap_or_clone)
            }
            Some((task, false)) => Err(ApiError::new(
                ErrorCode::TaskNotCancellable,
                if task.state.is_terminal() {
                    "The task has already finished and can no longer be cancelled."
                } else {
                    "The task is already being generated and can no longer be cancelled."
                },
            )
            .with_extra("status", task.public_status().as_str().into())),
        }
    }

    /// A task queued at its upstream can still be withdrawn there; true when it was.
    async fn cancel_upstream(
        &self,
        account: &Account,
        task: &TaskRecord,
    ) -> Result<bool, ApiError> {
        let (Some(channel), Some(upstream_id)) = (&task.channel, &task.upstream_id) else {
            return Ok(false);
        };
        if task.state != TaskState::Running || task.upstream_phase != Some(UpstreamPhase::Queued) {
            return Ok(false);
        }
        let Some(provider) = self.providers.get(&task.provider) else {
            return Ok(false);
        };
        let upstream = UpstreamRef {
            channel: channel.clone(),
            upstream_id: upstream_id.clone(),
            vendor: task.provider.clone(),
        };
        match provider.cancel(&upstream).await {
            Ok(CancelOutcome::Cancelled) => self
                .store
                .cancel_running_task(&account.id, &task.id)
                .await
                .map_err(internal),
            Ok(CancelOutcome::NotCancellable) => {
                // It has started: from now on it shows as processing.
                self.store
                    .note_upstream_running(&task.id)
                    .await
                    .map_err(internal)?;
                Ok(false)
            }
            Err(e) => Err(ApiError::new(
                ErrorCode::UpstreamUnavailable,
                format!(
                    "The upstream could not be reached to cancel the task; try again. ({})",
                    e.code
                ),
            )),
        }
    }

    /// An upstream says a task changed: poll it now. The hint is never trusted alone.
    pub async fn upstream_callback(&self, task_id: &TaskId, token: &str) -> Result<(), ApiError> {
        if !self.links.signer.verify_callback(task_id, token) {
            return Err(task_not_found());
        }
        if self.store.poll_soon(task_id).await.map_err(internal)? {
            self.poll_wake.notify_waiters();
        }
        Ok(())
    }

    /// One page of the account's tasks by position, and how many match in all.
    pub async fn task_page(
        &self,
        account: &Account,
        filter: &TaskFilter<'_>,
    ) -> Result<(Vec<TaskRecord>, i64), ApiError> {
        let tasks = self
            .store
            .list_tasks(&account.id, filter)
            .await
            .map_err(internal)?;
        let total = self
            .store
            .count_matching(&account.id, filter)
            .await
            .map_err(internal)?;
        Ok((tasks, total))
    }

    pub async fn list_tasks(
        &self,
        account: &Account,
        status: Option<&str>,
        model: Option<&str>,
        limit: Option<i64>,
        after: Option<&TaskId>,
    ) -> Result<TaskPage, ApiError> {
        let status = match status {
            None => None,
            Some(s) => Some(PublicStatus::parse(s).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidStatus,
                    "status must be one of pending, processing, completed, failed.",
                )
                .with_param("status")
            })?),
        };
        let limit = limit.unwrap_or(20);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::new(
                ErrorCode::InvalidLimit,
                format!("limit must be between 1 and {MAX_PAGE}."),
            )
            .with_param("limit"));
        }
        let mut tasks = self
            .store
            .list_tasks(
                &account.id,
                &TaskFilter {
                    status,
                    model,
                    after,
                    limit: limit + 1,
                    ..TaskFilter::default()
                },
            )
            .await
            .map_err(internal)?;
        let has_more = tasks.len() as i64 > limit;
        tasks.truncate(limit as usize);
        Ok(TaskPage { tasks, has_more })
    }
}

/// An `Idempotency-Key` is 1–255 visible ASCII characters (a UUID fits).
fn check_idempotency_key(key: &str) -> Result<&str, ApiError> {
    if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(key)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
        )
        .with_param("Idempotency-Key"))
    }
}
