//! Server-Sent Events: `GET /v1/tasks/{id}/events` follows one task, `GET /v1/tasks/events`
//! all of the key's. Polling stays as it is; this is the push beside it.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::auth::Authed;
use super::error::HttpError;
use super::tasks::TaskErrors;
use super::view::BaseUrl;
use super::ApiState;
use crate::ids::AnyTaskId;
use crate::service::events::TaskEvent;

fn last_event_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
}

fn sse(
    events: impl Stream<Item = TaskEvent> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(events.map(|event| {
        let data = serde_json::to_string(&event.data).unwrap_or_default();
        Ok(Event::default().event(event.event).id(event.id).data(data))
    }))
    .keep_alive(KeepAlive::default())
}

/// Follow one task live: an event at each status change (`task.pending`, `task.processing`,
/// `task.completed`, `task.failed`) and as its place in the queue moves (`task.progress`), each
/// with the task, its `queue_position` and `eta_seconds`; the stream ends after the last.
/// Reconnect with `Last-Event-ID` to get the statuses passed meanwhile.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}/events",
    operation_id = "task_events",
    tag = "tasks",
    params(
        ("id" = String, Path, description = "The task id: `vtask_…` or `cgt-…`."),
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received, to resume after it."),
    ),
    responses(
        (status = 200, description = "A stream of events (`text/event-stream`); `data` is JSON: `task_id`, `status`, `queue_position`, `eta_seconds`, `task`.", content_type = "text/event-stream", body = String),
        TaskErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn task_events(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    Path(AnyTaskId(id)): Path<AnyTaskId>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let events = state
        .services
        .events
        .follow_task(&account.id, &id, last_event_id(&headers), base)
        .await?;
    Ok(sse(events))
}

/// Follow all of the key's tasks live: the events of `GET /v1/tasks/{id}/events` for every
/// task, as they happen. Each event's `id` is the time of its change; reconnect with
/// `Last-Event-ID` to get every task changed since.
#[utoipa::path(
    get,
    path = "/v1/tasks/events",
    operation_id = "tasks_events",
    tag = "tasks",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received, to resume after it."),
    ),
    responses(
        (status = 200, description = "A stream of events (`text/event-stream`), as for one task.", content_type = "text/event-stream", body = String),
    ),
    security(("api_key" = [])),
)]
pub async fn tasks_events(
    State(state): State<ApiState>,
    Authed(account): Authed,
    BaseUrl(base): BaseUrl,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, HttpError> {
    let events = state
        .services
        .events
        .follow_account(&account.id, last_event_id(&headers), base)
        .await?;
    Ok(sse(events))
}
