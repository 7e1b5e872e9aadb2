//! Draft → final: a final names a completed draft of the same model and renders the draft's
//! own request (prompt, inputs, length, ratio, audio, seed) at the resolution it asks for.
//! Each leg is quoted, reserved and billed on its own. This module holds the pure rules; the
//! server looks the draft up and hands its facts here.

use serde::{Deserialize, Serialize};

use crate::catalog::ModelSpec;
use crate::error::{ApiError, ErrorCode};
use crate::job::{DurationRequest, Operation, OutputFormat, Resolution, ServiceTier, VideoJob};

/// A create request that renders a draft as a final (`draft_task_id` on `/v1`, a
/// `draft_task` content item on `/api/v3`): what the final sets for itself. Everything the
/// video shows comes from the draft.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalRequest {
    /// The model, which must be the draft's.
    pub model: String,
    /// The draft's task id, in `/v1`'s spelling.
    pub draft_task_id: String,
    /// The operation, when the client named it: it must be the draft's.
    pub operation: Option<Operation>,
    /// The final's resolution: the one asked for, or the model's default.
    pub resolution: Resolution,
    /// Whether the provider adds its watermark.
    pub watermark: bool,
    /// Whether the last frame is returned with the result.
    pub return_last_frame: bool,
    /// An http(s) URL to notify when the final ends.
    pub callback_url: Option<String>,
    /// The tier the client named.
    pub service_tier: Option<ServiceTier>,
    /// Seconds the upstream may take.
    pub execution_expires_after: Option<u32>,
    /// Upstream queue priority.
    pub priority: Option<u8>,
    /// The client's end-user id for abuse tracing.
    pub safety_identifier: Option<String>,
    /// The final's container.
    pub output_format: OutputFormat,
}

/// What a final is rendered from, stored with its job: the draft as this gateway and the
/// upstream that made it know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftSource {
    /// The draft's task id here.
    pub task_id: String,
    /// The provider that made the draft, which alone can render its final.
    pub provider: String,
    /// The draft's task at its upstream, which the final names on the same channel; `None`
    /// when the draft was rendered here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<DraftUpstream>,
}

/// An upstream draft task and the channel (the upstream account) that holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftUpstream {
    /// The channel's id in the server's configuration.
    pub channel: String,
    /// The upstream's task id.
    pub task_id: String,
}

/// Where a draft stands, as far as a final cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DraftState {
    /// Made, at this time (Unix milliseconds).
    Completed {
        /// When the draft ended.
        at_ms: i64,
    },
    /// Ended without a video.
    Failed,
    /// Cancelled before it was made.
    Cancelled,
    /// Still queued or being made.
    Unfinished,
}

/// When a draft completed at `completed_at_ms` stops being usable for a final (Unix
/// milliseconds); `None` for a model without drafts.
pub fn draft_expires_at_ms(model: &ModelSpec, completed_at_ms: i64) -> Option<i64> {
    model
        .draft
        .map(|spec| completed_at_ms + i64::from(spec.valid_days) * 86_400_000)
}

fn refuse(code: ErrorCode, message: String) -> ApiError {
    ApiError::new(code, message).with_param("draft_task_id")
}

/// The draft named by a final's `draft_task_id` when it exists for the caller: `Ok` when a
/// final may render from it. `model` is the final's, `draft_job` the draft task's job.
pub fn check_draft(
    model: &ModelSpec,
    draft_task_id: &str,
    draft_job: &VideoJob,
    state: DraftState,
    now_ms: i64,
) -> Result<(), ApiError> {
    if !draft_job.draft {
        return Err(refuse(
            ErrorCode::NotADraftTask,
            format!("`{draft_task_id}` is not a draft; make one with `\"draft\": true` first."),
        ));
    }
    if draft_job.model != model.id {
        return Err(refuse(
            ErrorCode::DraftModelMismatch,
            format!(
                "`{draft_task_id}` is a draft of `{}`; its final must name that model, not `{}`.",
                draft_job.model, model.id
            ),
        )
        .with_extra("draft_model", draft_job.model.clone().into()));
    }
    let completed_at_ms = match state {
        DraftState::Completed { at_ms } => at_ms,
        DraftState::Failed | DraftState::Cancelled | DraftState::Unfinished => {
            let (status, why) = match state {
                DraftState::Failed => ("failed", "failed, so there is nothing to render"),
                DraftState::Cancelled => ("cancelled", "was cancelled"),
                _ => (
                    "unfinished",
                    "has not finished yet; retry once it has completed",
                ),
            };
            return Err(refuse(
                ErrorCode::DraftTaskNotCompleted,
                format!("The draft `{draft_task_id}` {why}: only a completed draft has a final."),
            )
            .with_extra("draft_status", status.into()));
        }
    };
    let expires_at_ms = draft_expires_at_ms(model, completed_at_ms).unwrap_or(completed_at_ms);
    if now_ms >= expires_at_ms {
        return Err(refuse(
            ErrorCode::DraftTaskExpired,
            format!(
                "The draft `{draft_task_id}` expired {} days after it was made; make a new draft.",
                model.draft.map_or(0, |spec| spec.valid_days)
            ),
        )
        .with_extra("draft_expired_at", (expires_at_ms / 1000).into()));
    }
    Ok(())
}

impl FinalRequest {
    /// The final's job: the draft's own request at this request's resolution and delivery
    /// settings. `made_seconds` is the draft's real length, which a draft whose model chose
    /// it (`-1`) passes on so the final is quoted on what it will be; `seed` is the seed the
    /// draft was made with, so a renderer that draws from it makes the same video.
    pub fn job(
        &self,
        draft: &VideoJob,
        made_seconds: Option<u32>,
        seed: i64,
        source: DraftSource,
    ) -> Result<VideoJob, ApiError> {
        if let Some(asked) = self.operation.filter(|op| *op != draft.operation) {
            return Err(ApiError::new(
                ErrorCode::ConflictingInputs,
                format!(
                    "`operation` is `{asked}` but the draft is `{}`; a final keeps its draft's operation, so leave `operation` out.",
                    draft.operation
                ),
            )
            .with_param("operation"));
        }
        let duration = match (draft.duration, made_seconds) {
            (DurationRequest::ModelDecides, Some(seconds)) => DurationRequest::Seconds(seconds),
            (asked, _) => asked,
        };
        Ok(VideoJob {
            resolution: self.resolution,
            duration,
            seed: Some(seed),
            watermark: self.watermark,
            callback_url: self.callback_url.clone(),
            return_last_frame: self.return_last_frame,
            service_tier: self.service_tier,
            execution_expires_after: self.execution_expires_after,
            priority: self.priority,
            safety_identifier: self.safety_identifier.clone(),
            output_format: self.output_format,
            draft: false,
            final_of: Some(source),
            ..draft.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_create_request, CreateRequest};
    use crate::Catalog;

    fn parse(body: &str) -> Result<CreateRequest, ApiError> {
        parse_create_request(&Catalog::builtin(), body.as_bytes())
    }

    fn draft_job() -> VideoJob {
        match parse(
            r#"{"model":"seedance-2.5","prompt":"a fox","draft":true,"duration":-1,"generate_audio":false,"aspect_ratio":"9:16"}"#,
        ) {
            Ok(CreateRequest::Job(job)) => *job,
            other => panic!("{other:?}"),
        }
    }

    fn final_request(body: &str) -> FinalRequest {
        match parse(body) {
            Ok(CreateRequest::Final(request)) => request,
            other => panic!("{other:?}"),
        }
    }

    fn source() -> DraftSource {
        DraftSource {
            task_id: "vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
            provider: "sandbox".into(),
            upstream: None,
        }
    }

    const FINAL: &str = r#"{"model":"seedance-2.5","draft_task_id":"cgt-01JF3Q7Z8X9Y0A1B2C3D4E5F6G","resolution":"1080p"}"#;

    #[test]
    fn a_final_renders_the_drafts_request_at_its_own_resolution() {
        let request = final_request(FINAL);
        assert_eq!(request.draft_task_id, "vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G");
        let draft = draft_job();
        let job = request.job(&draft, Some(10), 77, source()).unwrap();
        assert_eq!(job.resolution, Resolution::P1080);
        assert_eq!(job.prompt, draft.prompt);
        assert_eq!(job.aspect_ratio, draft.aspect_ratio);
        assert!(!job.generate_audio && !job.draft);
        assert_eq!(job.seed, Some(77));
        assert_eq!(
            job.duration,
            DurationRequest::Seconds(10),
            "the length the draft chose"
        );
        assert_eq!(job.final_of, Some(source()));
        assert_eq!(
            job.echo().draft_task_id.as_deref(),
            Some(source().task_id.as_str())
        );
    }

    #[test]
    fn a_final_without_resolution_takes_the_models_default() {
        let request = final_request(
            r#"{"model":"seedance-2.5","draft_task_id":"vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G"}"#,
        );
        let model = Catalog::builtin().model("seedance-2.5").unwrap().clone();
        assert_eq!(request.resolution, model.default_resolution);
    }

    #[test]
    fn a_final_refuses_what_it_takes_from_its_draft() {
        for (field, value) in [
            ("prompt", r#""another""#),
            ("duration", "5"),
            ("ratio", r#""16:9""#),
            ("seed", "3"),
            ("generate_audio", "true"),
            ("reference_images", r#"["https://example.com/a.png"]"#),
            ("draft", "true"),
        ] {
            let body = format!(
                r#"{{"model":"seedance-2.5","draft_task_id":"vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G","{field}":{value}}}"#
            );
            let e = parse(&body).unwrap_err();
            assert_eq!(e.code, ErrorCode::ConflictingInputs, "{field}: {e:?}");
            assert_eq!(e.param.as_deref(), Some(field));
        }
    }

    #[test]
    fn a_final_is_refused_on_a_model_without_drafts_and_for_a_malformed_id() {
        let e =
            parse(r#"{"model":"seedance-2.0","draft_task_id":"vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G"}"#)
                .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedParameter);
        assert!(e.message.contains("seedance-2.0"), "{}", e.message);
        let e = parse(r#"{"model":"seedance-2.5","draft_task_id":"task-1"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            (ErrorCode::InvalidTaskId, Some("draft_task_id"))
        );
        let e = parse(r#"{"model":"seedance-2.5","draft_task_id":"vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G","resolution":"4k"}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedResolution);
    }

    #[test]
    fn a_final_must_keep_its_drafts_operation() {
        let request = final_request(
            r#"{"model":"seedance-2.5","operation":"image-to-video","draft_task_id":"vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G"}"#,
        );
        let e = request.job(&draft_job(), None, 1, source()).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            (ErrorCode::ConflictingInputs, Some("operation"))
        );
    }

    #[test]
    fn only_a_completed_unexpired_draft_of_the_same_model_has_a_final() {
        let catalog = Catalog::builtin();
        let model = catalog.model("seedance-2.5").unwrap();
        let draft = draft_job();
        let id = "vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G";
        let day = 86_400_000;
        let made = DraftState::Completed { at_ms: 10 * day };
        let code = |job: &VideoJob, state, now| {
            check_draft(model, id, job, state, now).map_err(|e| e.code)
        };
        assert_eq!(code(&draft, made, 16 * day), Ok(()));
        assert_eq!(
            code(&draft, made, 17 * day),
            Err(ErrorCode::DraftTaskExpired),
            "valid 7 days"
        );
        for state in [
            DraftState::Failed,
            DraftState::Cancelled,
            DraftState::Unfinished,
        ] {
            assert_eq!(
                code(&draft, state, 0),
                Err(ErrorCode::DraftTaskNotCompleted)
            );
        }
        let not_a_draft = VideoJob {
            draft: false,
            ..draft.clone()
        };
        assert_eq!(code(&not_a_draft, made, 0), Err(ErrorCode::NotADraftTask));
        let other_model = VideoJob {
            model: "seedance-2.0".into(),
            ..draft
        };
        assert_eq!(
            code(&other_model, made, 0),
            Err(ErrorCode::DraftModelMismatch)
        );
        assert_eq!(draft_expires_at_ms(model, 0), Some(7 * day));
    }
}
