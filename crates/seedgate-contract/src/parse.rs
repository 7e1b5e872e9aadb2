//! Request bytes → [`VideoJob`], or the first rule that fails, in the order of SPEC §2:
//! JSON syntax → schema (unknown fields, types, aliases) → model → operation → inputs → limits.
//!
//! A `null` or an empty list counts as "not sent": it carries no media and changes nothing.

use std::str::FromStr;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::catalog::{Catalog, ModelSpec};
use crate::error::{ApiError, ErrorType};
use crate::job::{
    split_data_uri, AspectRatio, DurationRequest, JobInputs, MediaInput, Operation, Resolution,
    VideoJob,
};

/// Every top-level field the API accepts (aliases included).
const FIELDS: [&str; 23] = [
    "model",
    "operation",
    "prompt",
    "resolution",
    "aspect_ratio",
    "ratio",
    "duration",
    "seconds",
    "seed",
    "generate_audio",
    "output_audio",
    "watermark",
    "callback_url",
    "image_url",
    "image",
    "start_image",
    "end_image",
    "reference_images",
    "video_urls",
    "audio_urls",
    "video_url",
    "video",
    "task_id",
];

const MAX_PROMPT_CHARS: usize = 5000;
const MAX_URL_CHARS: usize = 4096;
const MB: usize = 1024 * 1024;

/// The kinds of media input, each with its accepted types and size cap.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    Image,
    Video,
    Audio,
}

impl Media {
    fn name(self) -> &'static str {
        match self {
            Media::Image => "image",
            Media::Video => "video",
            Media::Audio => "audio",
        }
    }

    fn max_bytes(self) -> usize {
        match self {
            Media::Image => 10 * MB,
            Media::Video => 50 * MB,
            Media::Audio => 15 * MB,
        }
    }

    fn mime_types(self) -> &'static [&'static str] {
        match self {
            Media::Image => &["image/jpeg", "image/jpg", "image/png", "image/webp"],
            Media::Video => &["video/mp4", "video/quicktime"],
            Media::Audio => &[
                "audio/mpeg",
                "audio/mp3",
                "audio/wav",
                "audio/x-wav",
                "audio/wave",
                "audio/mp4",
                "audio/aac",
                "audio/m4a",
                "audio/x-m4a",
            ],
        }
    }

    /// Checks the content really is what the declared type says.
    fn sniff(self, bytes: &[u8]) -> bool {
        let riff =
            |kind: &[u8]| bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == kind;
        let iso_box = bytes.len() >= 8
            && matches!(
                &bytes[4..8],
                b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free"
            );
        match self {
            Media::Image => {
                bytes.starts_with(b"\x89PNG\r\n\x1a\n")
                    || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
                    || riff(b"WEBP")
            }
            Media::Video => iso_box,
            Media::Audio => {
                riff(b"WAVE")
                    || bytes.starts_with(b"ID3")
                    || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0)
                    || iso_box
            }
        }
    }
}

fn invalid(code: &'static str, param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(code, Some(param), message)
}

/// Typed access to the JSON object, turning wrong types into `invalid_type`.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(
                "invalid_type",
                key,
                format!("`{key}` must be a string."),
            )),
        }
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                invalid("invalid_type", key, format!("`{key}` must be an integer."))
            }),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid(
                "invalid_type",
                key,
                format!("`{key}` must be true or false."),
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>, ApiError> {
        let not_list = || {
            invalid(
                "invalid_type",
                key,
                format!("`{key}` must be an array of strings."),
            )
        };
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) if items.is_empty() => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().ok_or_else(not_list))
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(not_list()),
        }
    }

    /// A field that may also be sent under an alias; both present must agree.
    fn aliased<T: PartialEq>(
        &self,
        primary: &str,
        alias: &str,
        read: impl Fn(&Self, &str) -> Result<Option<T>, ApiError>,
    ) -> Result<Option<(T, &'static str)>, ApiError>
    where
        Self: Sized,
    {
        let a = read(self, primary)?;
        let b = read(self, alias)?;
        match (a, b) {
            (Some(a), Some(b)) if a != b => Err(invalid(
                "alias_conflict",
                alias,
                format!("`{primary}` and `{alias}` are the same setting and disagree; send one of them."),
            )),
            (Some(a), _) => Ok(Some((a, static_name(primary)))),
            (None, Some(b)) => Ok(Some((b, static_name(alias)))),
            (None, None) => Ok(None),
        }
    }
}

fn static_name(field: &str) -> &'static str {
    FIELDS.iter().find(|f| **f == field).copied().unwrap_or("")
}

/// The request after the schema step: right types, no unknown fields, aliases folded.
struct Raw<'a> {
    model: &'a str,
    operation: &'a str,
    prompt: Option<&'a str>,
    resolution: Option<&'a str>,
    aspect_ratio: Option<(&'a str, &'static str)>,
    duration: Option<(i64, &'static str)>,
    seed: Option<i64>,
    generate_audio: Option<bool>,
    watermark: Option<bool>,
    callback_url: Option<&'a str>,
    image: Option<(&'a str, &'static str)>,
    start_image: Option<&'a str>,
    end_image: Option<&'a str>,
    reference_images: Option<Vec<&'a str>>,
    video_urls: Option<Vec<&'a str>>,
    audio_urls: Option<Vec<&'a str>>,
    video: Option<(&'a str, &'static str)>,
    task_id: Option<&'a str>,
}

impl<'a> Raw<'a> {
    fn read(f: &Fields<'a>) -> Result<Self, ApiError> {
        let required = |key: &str| -> Result<&'a str, ApiError> {
            f.string(key)?
                .ok_or_else(|| invalid("missing_field", key, format!("`{key}` is required.")))
        };
        Ok(Raw {
            model: required("model")?,
            operation: required("operation")?,
            prompt: f.string("prompt")?,
            resolution: f.string("resolution")?,
            aspect_ratio: f.aliased("aspect_ratio", "ratio", Fields::string)?,
            duration: f.aliased("duration", "seconds", Fields::integer)?,
            seed: f.integer("seed")?,
            generate_audio: f
                .aliased("generate_audio", "output_audio", Fields::boolean)?
                .map(|(v, _)| v),
            watermark: f.boolean("watermark")?,
            callback_url: f.string("callback_url")?,
            image: f.aliased("image_url", "image", Fields::string)?,
            start_image: f.string("start_image")?,
            end_image: f.string("end_image")?,
            reference_images: f.strings("reference_images")?,
            video_urls: f.strings("video_urls")?,
            audio_urls: f.strings("audio_urls")?,
            video: f.aliased("video_url", "video", Fields::string)?,
            task_id: f.string("task_id")?,
        })
    }

    /// Media fields present in the request, as (name sent, allowed-for-operation check key).
    fn present_inputs(&self) -> Vec<&'static str> {
        let mut present = Vec::new();
        if let Some((_, name)) = self.image {
            present.push(name);
        }
        if self.start_image.is_some() {
            present.push("start_image");
        }
        if self.end_image.is_some() {
            present.push("end_image");
        }
        if self.reference_images.is_some() {
            present.push("reference_images");
        }
        if self.video_urls.is_some() {
            present.push("video_urls");
        }
        if self.audio_urls.is_some() {
            present.push("audio_urls");
        }
        if let Some((_, name)) = self.video {
            present.push(name);
        }
        if self.task_id.is_some() {
            present.push("task_id");
        }
        present
    }
}

/// Which input fields each operation accepts (SPEC §2); aliases count as their primary.
fn accepts(operation: Operation, field: &str) -> bool {
    let field = match field {
        "image" => "image_url",
        "video" => "video_url",
        other => other,
    };
    match operation {
        Operation::TextToVideo => false,
        Operation::ImageToVideo => field == "image_url",
        Operation::StartEndToVideo => matches!(field, "start_image" | "end_image"),
        Operation::ReferenceToVideo => {
            matches!(field, "reference_images" | "video_urls" | "audio_urls")
        }
        Operation::VideoToVideo => field == "video_url",
        Operation::VideoExtension => matches!(field, "video_url" | "task_id"),
    }
}

/// Parses and validates a create request against the catalog.
pub fn parse_create_request(catalog: &Catalog, body: &[u8]) -> Result<VideoJob, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            "invalid_json",
            None,
            format!("The request body is not valid JSON: {e}."),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid(
            "invalid_json",
            None,
            "The request body must be a JSON object.",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            "unknown_field",
            unknown,
            format!("Unknown field `{unknown}`."),
        ));
    }
    let raw = Raw::read(&Fields(&map))?;

    let model = catalog.model(raw.model).ok_or_else(|| {
        let ids: Vec<Value> = catalog
            .models()
            .iter()
            .map(|m| m.id.clone().into())
            .collect();
        ApiError::new(
            400,
            ErrorType::ModelNotFound,
            "model_not_found",
            format!("The model `{}` does not exist.", raw.model),
        )
        .with_param("model")
        .with_extra("available_models", ids.into())
    })?;

    let operation = Operation::from_str(raw.operation)
        .ok()
        .filter(|op| model.operations.contains(op))
        .ok_or_else(|| {
            let ops: Vec<Value> = model.operations.iter().map(|o| o.as_str().into()).collect();
            invalid(
                "unsupported_operation",
                "operation",
                format!(
                    "`{}` does not support the operation `{}`.",
                    model.id, raw.operation
                ),
            )
            .with_extra("allowed_operations", ops.into())
        })?;

    let inputs = check_inputs(&raw, operation)?;
    let prompt = check_prompt(raw.prompt, operation)?;
    let callback_url = raw.callback_url.map(check_callback_url).transpose()?;

    let resolution = check_resolution(model, raw.resolution)?;
    let duration = check_duration(model, raw.duration)?;
    let aspect_ratio = check_aspect_ratio(model, raw.aspect_ratio, operation)?;
    check_reference_limits(model, &inputs)?;
    let seed = raw.seed.map(check_seed).transpose()?;

    Ok(VideoJob {
        model: model.id.clone(),
        operation,
        prompt,
        resolution,
        aspect_ratio,
        duration,
        seed,
        generate_audio: raw.generate_audio.unwrap_or(true),
        watermark: raw.watermark.unwrap_or(false),
        callback_url,
        inputs,
    })
}

fn check_inputs(raw: &Raw<'_>, operation: Operation) -> Result<JobInputs, ApiError> {
    for field in raw.present_inputs() {
        if accepts(operation, field) {
            continue;
        }
        if field == "audio_urls" {
            return Err(invalid(
                "audio_not_allowed",
                field,
                "Audio is accepted only as `audio_urls` of `reference-to-video`.",
            ));
        }
        return Err(invalid(
            "input_not_allowed",
            field,
            format!("`{field}` is not an input of `{}`.", operation.as_str()),
        ));
    }
    let missing = |field: &str| {
        invalid(
            "missing_field",
            field,
            format!("`{}` needs `{field}`.", operation.as_str()),
        )
    };
    let mut inputs = JobInputs::default();
    match operation {
        Operation::TextToVideo => {}
        Operation::ImageToVideo => {
            let (url, name) = raw.image.ok_or_else(|| missing("image_url"))?;
            inputs.image = Some(media(Media::Image, name, url)?);
        }
        Operation::StartEndToVideo => {
            let start = raw.start_image.ok_or_else(|| missing("start_image"))?;
            let end = raw.end_image.ok_or_else(|| missing("end_image"))?;
            inputs.start_image = Some(media(Media::Image, "start_image", start)?);
            inputs.end_image = Some(media(Media::Image, "end_image", end)?);
        }
        Operation::ReferenceToVideo => {
            if raw.reference_images.is_none() && raw.video_urls.is_none() {
                if raw.audio_urls.is_some() {
                    return Err(invalid(
                        "audio_requires_visual_reference",
                        "audio_urls",
                        "Audio references need at least one image or video reference.",
                    ));
                }
                return Err(invalid(
                    "missing_visual_reference",
                    "reference_images",
                    "`reference-to-video` needs at least one of `reference_images` or `video_urls`.",
                ));
            }
            let list =
                |kind, field, urls: &Option<Vec<&str>>| -> Result<Vec<MediaInput>, ApiError> {
                    urls.iter()
                        .flatten()
                        .map(|u| media(kind, field, u))
                        .collect()
                };
            inputs.reference_images =
                list(Media::Image, "reference_images", &raw.reference_images)?;
            inputs.reference_videos = list(Media::Video, "video_urls", &raw.video_urls)?;
            inputs.reference_audios = list(Media::Audio, "audio_urls", &raw.audio_urls)?;
        }
        Operation::VideoToVideo => {
            let (url, name) = raw.video.ok_or_else(|| missing("video_url"))?;
            inputs.video = Some(media(Media::Video, name, url)?);
        }
        Operation::VideoExtension => match (raw.task_id, raw.video) {
            (Some(_), Some((_, name))) => {
                return Err(invalid(
                    "conflicting_inputs",
                    name,
                    "Send either `task_id` or `video_url` to extend, not both.",
                ))
            }
            (Some(task_id), None) => inputs.source_task_id = Some(check_task_id(task_id)?),
            (None, Some((url, name))) => inputs.video = Some(media(Media::Video, name, url)?),
            (None, None) => return Err(missing("task_id")),
        },
    }
    Ok(inputs)
}

fn check_task_id(task_id: &str) -> Result<String, ApiError> {
    let ulid = task_id.strip_prefix("vtask_").unwrap_or("");
    let crockford = |c: char| {
        c.is_ascii_digit() || (c.is_ascii_uppercase() && !matches!(c, 'I' | 'L' | 'O' | 'U'))
    };
    if ulid.len() == 26 && ulid.chars().all(crockford) {
        Ok(task_id.to_owned())
    } else {
        Err(invalid(
            "invalid_task_id",
            "task_id",
            "`task_id` must be the id of one of your tasks (`vtask_…`).",
        ))
    }
}

fn check_prompt(prompt: Option<&str>, operation: Operation) -> Result<Option<String>, ApiError> {
    let Some(prompt) = prompt else {
        if operation == Operation::VideoExtension {
            return Ok(None);
        }
        return Err(invalid("missing_field", "prompt", "`prompt` is required."));
    };
    let chars = prompt.chars().count();
    if prompt.trim().is_empty() || chars > MAX_PROMPT_CHARS {
        return Err(invalid(
            "invalid_prompt",
            "prompt",
            format!("`prompt` must be 1 to {MAX_PROMPT_CHARS} characters of text (got {chars})."),
        ));
    }
    Ok(Some(prompt.to_owned()))
}

/// An http(s) URL with a host, at most 4,096 characters, without spaces.
fn is_web_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty()
        && url.len() <= MAX_URL_CHARS
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_callback_url(url: &str) -> Result<String, ApiError> {
    if is_web_url(url) {
        Ok(url.to_owned())
    } else {
        Err(invalid(
            "invalid_callback_url",
            "callback_url",
            "`callback_url` must be an http or https URL.",
        ))
    }
}

/// Checks one media input: a web URL, or a data: URI of an allowed type and size whose
/// content matches its declared type (images also within 300–6000 px, aspect 0.4–2.5).
fn media(kind: Media, field: &str, value: &str) -> Result<MediaInput, ApiError> {
    if is_web_url(value) {
        return Ok(MediaInput::new_unchecked(value.to_owned()));
    }
    if !value.starts_with("data:") {
        return Err(invalid(
            "invalid_media_url",
            field,
            format!("`{field}` must be an https://, http:// or data: URI."),
        ));
    }
    let (mime, payload) = split_data_uri(value).ok_or_else(|| {
        invalid(
            "invalid_media_url",
            field,
            format!("`{field}`: a data URI must look like data:<type>;base64,<data>."),
        )
    })?;
    let allowed = kind.mime_types();
    if !allowed.contains(&mime.to_ascii_lowercase().as_str()) {
        return Err(invalid(
            "unsupported_media_type",
            field,
            format!(
                "`{field}`: {mime} is not an accepted {} type ({}).",
                kind.name(),
                allowed.join(", ")
            ),
        ));
    }
    let too_large = || {
        invalid(
            "media_too_large",
            field,
            format!(
                "`{field}`: a {} data URI may hold at most {} MB.",
                kind.name(),
                kind.max_bytes() / MB
            ),
        )
    };
    // Refuse before decoding: base64 is 4 characters per 3 bytes.
    if payload.len() / 4 * 3 > kind.max_bytes() + 3 {
        return Err(too_large());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|_| {
            invalid(
                "invalid_media_url",
                field,
                format!("`{field}`: the data URI is not valid base64."),
            )
        })?;
    if bytes.len() > kind.max_bytes() {
        return Err(too_large());
    }
    if !kind.sniff(&bytes) {
        return Err(invalid(
            "unsupported_media_type",
            field,
            format!(
                "`{field}`: the content is not a {} of the declared type {mime}.",
                kind.name()
            ),
        ));
    }
    if kind == Media::Image {
        check_image_dimensions(field, &bytes)?;
    }
    Ok(MediaInput::new_unchecked(value.to_owned()))
}

fn check_image_dimensions(field: &str, bytes: &[u8]) -> Result<(), ApiError> {
    let size = imagesize::blob_size(bytes).map_err(|_| {
        invalid(
            "unsupported_media_type",
            field,
            format!("`{field}`: the image cannot be read."),
        )
    })?;
    let (w, h) = (size.width, size.height);
    let aspect = w as f64 / h.max(1) as f64;
    if !(300..=6000).contains(&w) || !(300..=6000).contains(&h) || !(0.4..=2.5).contains(&aspect) {
        return Err(invalid(
            "invalid_image_dimensions",
            field,
            format!("`{field}` is {w}×{h}; images must be 300–6000 px a side with an aspect ratio of 0.4–2.5."),
        ));
    }
    Ok(())
}

fn check_resolution(model: &ModelSpec, resolution: Option<&str>) -> Result<Resolution, ApiError> {
    let Some(text) = resolution else {
        return Ok(model.default_resolution);
    };
    Resolution::from_str(text)
        .ok()
        .filter(|r| model.resolutions.contains(r))
        .ok_or_else(|| {
            let allowed: Vec<&str> = model.resolutions.iter().map(|r| r.as_str()).collect();
            invalid(
                "unsupported_resolution",
                "resolution",
                format!(
                    "`{}` does not offer resolution `{text}`; use one of {}.",
                    model.id,
                    allowed.join(", ")
                ),
            )
            .with_extra("allowed_resolutions", allowed.into())
        })
}

fn check_duration(
    model: &ModelSpec,
    duration: Option<(i64, &'static str)>,
) -> Result<DurationRequest, ApiError> {
    let range = model.duration;
    match duration {
        None => Ok(DurationRequest::Seconds(range.default)),
        Some((-1, _)) => Ok(DurationRequest::ModelDecides),
        Some((s, _)) if s >= i64::from(range.min) && s <= i64::from(range.max) => {
            Ok(DurationRequest::Seconds(s as u32))
        }
        Some((s, name)) => Err(invalid(
            "invalid_duration",
            name,
            format!(
                "`{name}` must be {} to {} seconds, or -1 to let the model decide (got {s}).",
                range.min, range.max
            ),
        )
        .with_extra("min", range.min.into())
        .with_extra("max", range.max.into())),
    }
}

fn check_aspect_ratio(
    model: &ModelSpec,
    ratio: Option<(&str, &'static str)>,
    operation: Operation,
) -> Result<AspectRatio, ApiError> {
    let Some((text, name)) = ratio else {
        return Ok(match operation {
            Operation::ImageToVideo | Operation::StartEndToVideo => AspectRatio::Adaptive,
            _ => AspectRatio::W16H9,
        });
    };
    let ratio = AspectRatio::from_str(text)
        .ok()
        .filter(|r| model.aspect_ratios.contains(r))
        .ok_or_else(|| {
            let allowed: Vec<&str> = model.aspect_ratios.iter().map(|r| r.as_str()).collect();
            invalid(
                "invalid_aspect_ratio",
                name,
                format!(
                    "`{name}` must be one of {} (got `{text}`).",
                    allowed.join(", ")
                ),
            )
            .with_extra("allowed_aspect_ratios", allowed.into())
        })?;
    if ratio == AspectRatio::Adaptive && !operation.has_visual_input() {
        return Err(invalid(
            "adaptive_requires_visual_input",
            name,
            "`adaptive` follows an input image or video; `text-to-video` has none. Pick a fixed ratio.",
        ));
    }
    Ok(ratio)
}

fn check_reference_limits(model: &ModelSpec, inputs: &JobInputs) -> Result<(), ApiError> {
    let limits = model.reference_limits;
    for (field, count, limit) in [
        (
            "reference_images",
            inputs.reference_images.len(),
            limits.images,
        ),
        ("video_urls", inputs.reference_videos.len(), limits.videos),
        ("audio_urls", inputs.reference_audios.len(), limits.audios),
    ] {
        if count > limit {
            return Err(invalid(
                "too_many_references",
                field,
                format!(
                    "`{}` accepts at most {limit} items in `{field}` (got {count}).",
                    model.id
                ),
            )
            .with_extra("limit", limit.into()));
        }
    }
    Ok(())
}

fn check_seed(seed: i64) -> Result<i64, ApiError> {
    if (-1..=4_294_967_295).contains(&seed) {
        Ok(seed)
    } else {
        Err(invalid(
            "invalid_seed",
            "seed",
            "`seed` must be between -1 and 4294967295.",
        ))
    }
}
