//! The create request as the OpenAPI document describes it. The parser in [`crate::parse`]
//! stays the one authority (it orders its rules and names the first that fails); this type
//! only publishes the shape, and tests hold the two together: the same field names, and every
//! body the parser accepts also fits this schema.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::job::{AspectRatio, Operation, OutputFormat, Resolution, ServiceTier};

/// `POST /v1/videos/generations`. Which media fields an operation takes, and how many, is in
/// docs/requests.md and in each model's `GET /v1/models/{model}`; `null` and `[]` count as not sent.
/// Media values are `https://`/`http://` URLs or base64 `data:` URIs; image fields also take
/// `asset://asset-YYYYMMDDHHMMSS-xxxxx` material references. Fields the platform documents for
/// other model families are refused with `unsupported_parameter`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "seedance-2.0-fast",
    "operation": "text-to-video",
    "prompt": "A clean product reveal on a white studio background, the camera pushing in slowly.",
    "resolution": "480p",
    "aspect_ratio": "16:9",
    "duration": 4,
    "generate_audio": false
}))]
pub struct CreateVideoRequest {
    /// A model id from `GET /v1/models`.
    #[schema(example = "seedance-2.0-fast")]
    pub model: String,
    /// The workflow. When omitted, it is inferred from the inputs sent (none: text-to-video);
    /// inputs of different operations are `ambiguous_operation`.
    pub operation: Option<Operation>,
    /// 1–5,000 characters, not all whitespace, no control characters but line breaks and
    /// tabs; required except for video-extension.
    #[schema(
        min_length = 1,
        max_length = 5000,
        example = "A clean product reveal on a white studio background."
    )]
    pub prompt: Option<String>,
    /// One of the model's resolutions; default the model's (720p).
    pub resolution: Option<Resolution>,
    /// Output shape; default `adaptive`: the output follows the image or video input, and is
    /// 16:9 for a prompt alone.
    pub aspect_ratio: Option<AspectRatio>,
    /// Alias of `aspect_ratio`; both must agree when both are sent.
    pub ratio: Option<AspectRatio>,
    /// Whole seconds within the model's range (4–15), or -1 to let the model decide.
    #[schema(minimum = -1, maximum = 15, example = 5)]
    pub duration: Option<i64>,
    /// Alias of `duration`.
    #[schema(minimum = -1, maximum = 15)]
    pub seconds: Option<i64>,
    /// -1 asks for a random seed.
    #[schema(minimum = -1, maximum = 4_294_967_295_i64)]
    pub seed: Option<i64>,
    /// Whether the output has an audio track; default true.
    pub generate_audio: Option<bool>,
    /// Alias of `generate_audio`.
    pub output_audio: Option<bool>,
    /// Alias of `generate_audio`.
    #[serde(rename = "outputAudio")]
    pub output_audio_camel_case: Option<bool>,
    /// Whether the provider adds its watermark; default false.
    pub watermark: Option<bool>,
    /// Whether the result also returns the video's last frame; default false.
    pub return_last_frame: Option<bool>,
    /// The upstream's processing tier; only `default` (`flex` is refused for Seedance 2.0).
    pub service_tier: Option<ServiceTier>,
    /// Seconds the upstream may take to finish the task.
    #[schema(minimum = 3600, maximum = 259_200, example = 172_800)]
    pub execution_expires_after: Option<i64>,
    /// Upstream queue priority.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<i64>,
    /// A stable id of your end user, passed on for the upstream's abuse tracing.
    #[schema(min_length = 1, max_length = 64)]
    pub safety_identifier: Option<String>,
    /// Your end user's id: used as `safety_identifier` (and held to its rules) when that is
    /// not sent, otherwise not kept.
    pub user: Option<String>,
    /// `true` makes a draft: a preview at the model's draft resolution (`tokenlab.draft`),
    /// billed on its own; refused for a model without a draft mode. `false` changes nothing.
    pub draft: Option<bool>,
    /// Makes the final of a completed draft of the same model (`vtask_…` or `cgt-…`): the
    /// draft's prompt, inputs, length, ratio, audio and seed at `resolution`, billed on its
    /// own. Those fields may not be sent with it.
    pub draft_task_id: Option<String>,
    /// Only `false` (a no-op): Seedance 2.0 models cannot fix the camera.
    pub camera_fixed: Option<bool>,
    /// The result's container: `mp4` (the default) or, where the model offers it
    /// (`tokenlab.output_formats`), `mov`.
    pub output_format: Option<OutputFormat>,
    /// An `https://` or `http://` URL that receives a signed POST when the task ends.
    pub callback_url: Option<String>,
    /// image-to-video: the first frame.
    pub image_url: Option<String>,
    /// Alias of `image_url`.
    pub image: Option<String>,
    /// start-end-to-video: the first frame.
    pub start_image: Option<String>,
    /// start-end-to-video: the last frame.
    pub end_image: Option<String>,
    /// reference-to-video: reference images (at most the model's limit, 9 built in).
    pub reference_images: Option<Vec<String>>,
    /// Alias of `reference_images`; both must be the same list when both are sent.
    pub image_urls: Option<Vec<String>>,
    /// reference-to-video: reference videos (at most 3 built in, 2–15 s each, ≤ 15 s in all).
    pub video_urls: Option<Vec<String>>,
    /// reference-to-video: reference audio, only beside an image or video reference.
    pub audio_urls: Option<Vec<String>>,
    /// video-to-video or video-extension: the source video.
    pub video_url: Option<String>,
    /// Alias of `video_url`.
    pub video: Option<String>,
    /// video-extension: a completed task of the same account to continue.
    pub task_id: Option<String>,
    /// An ACTIVE image of the organization's material library (`asset-YYYYMMDDHHMMSS-xxxxx`),
    /// as one more reference image. For another role put `asset://<id>` in `image_url`,
    /// `start_image` or `end_image`.
    #[schema(pattern = r"^asset-\d{14}-[a-z0-9]{5}$")]
    pub material_asset_id: Option<String>,
    /// More material images, as reference images; they share the reference-image limit.
    pub material_asset_ids: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::PartialSchema;

    use super::*;
    use crate::parse::FIELDS;

    #[test]
    fn the_schema_names_exactly_the_fields_the_parser_accepts() {
        let schema = serde_json::to_value(CreateVideoRequest::schema()).unwrap();
        let documented: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let accepted: BTreeSet<&str> = FIELDS.into_iter().collect();
        assert_eq!(documented, accepted);
        assert_eq!(schema["additionalProperties"], false);
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(required, BTreeSet::from(["model"]));
    }
}
