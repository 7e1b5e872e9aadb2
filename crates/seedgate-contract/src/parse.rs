//! Request bytes → [`VideoJob`], or the first rule that fails, in the order clients are promised
//! (docs/requests.md, "Validation order"):
//!
//! 1. **JSON** — syntax, a top-level object, no key twice (`invalid_json`).
//! 2. **Schema** — no unknown field (`unknown_field`), right types (`invalid_type`),
//!    `model` present (`missing_field`), aliases agree (`alias_conflict`); Ark's prompt
//!    commands (`--rs 1080p`) read into their fields and out of the prompt
//!    (`invalid_prompt_command`, `prompt_command_conflict`).
//! 3. **Model** — in the catalog (`model_not_found`); no field the platform documents only
//!    for other models (`unsupported_parameter`).
//! 4. **Operation** — the one sent, or the one the inputs imply (`ambiguous_operation`),
//!    served by the model (`unsupported_operation`).
//! 5. **Inputs** — the prompt (`missing_field`, `invalid_prompt`); which media fields the
//!    operation takes and needs (`input_not_allowed`, `audio_not_allowed`, `missing_field`,
//!    `missing_visual_reference`, `audio_requires_visual_reference`, `conflicting_inputs`);
//!    the form of each media value (`invalid_media_url`), `task_id` (`invalid_task_id`) and
//!    `callback_url` (`invalid_callback_url`).
//! 6. **Limits** — resolution, duration, aspect ratio and seed against the model
//!    (`unsupported_resolution`, `invalid_duration`, `invalid_aspect_ratio`, `invalid_seed`),
//!    the upstream settings (`unsupported_service_tier`, `invalid_execution_expires_after`,
//!    `invalid_priority`, `invalid_safety_identifier`), reference counts
//!    (`too_many_references`), then the content of data: URIs, most expensive last
//!    (`unsupported_media_type`, `media_too_large`, `invalid_media_url` for bad base64,
//!    `invalid_image_dimensions`).
//!
//! Within a step, fields are checked in a fixed order, so the same body always gives the
//! same answer.
//!
//! **`null` and `[]` count as "not sent".** A `null` field, or an empty list in a media slot,
//! carries nothing: it cannot change what is generated or charged, and SDKs commonly send
//! every optional field. So `"reference_images": []` on text-to-video is accepted, while
//! `"reference_images": ["https://…"]` is `input_not_allowed`; and reference-to-video with
//! only empty lists is `missing_visual_reference`. Unknown keys are rejected even when `null`.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::catalog::{Catalog, ModelSpec};
use crate::drafts::FinalRequest;
use crate::error::{ApiError, ErrorCode};
use crate::job::{
    strip_data_scheme, AspectRatio, DataUri, DurationRequest, JobInputs, MediaInput, Operation,
    OutputFormat, Resolution, ServiceTier, VideoJob, BASE64,
};

/// Every top-level field the API accepts, aliases included; anything else is
/// `unsupported_parameter` if listed in [`UNSUPPORTED_FIELDS`], else `unknown_field`.
pub const FIELDS: [&str; 37] = [
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
    "outputAudio",
    "watermark",
    "return_last_frame",
    "service_tier",
    "execution_expires_after",
    "priority",
    "safety_identifier",
    "user",
    "draft",
    "draft_task_id",
    "camera_fixed",
    "output_format",
    "callback_url",
    "image_url",
    "image",
    "start_image",
    "end_image",
    "reference_images",
    "image_urls",
    "video_urls",
    "audio_urls",
    "video_url",
    "video",
    "task_id",
    "material_asset_id",
    "material_asset_ids",
];

/// Why a field is refused for Seedance models: most belong to other model families.
const OTHER_FAMILY: &str =
    "belongs to another model family and is not supported by Seedance models; remove it.";

/// Fields the platform documents for its other video models, or for Seedance workflows this
/// gateway does not serve, each with the end of its error message. Known rather than unknown,
/// so the client learns why; refused rather than dropped, so nothing a client asked for is
/// silently lost. `null` counts as not sent, as everywhere.
pub const UNSUPPORTED_FIELDS: [(&str, &str); 13] = [
    ("negative_prompt", OTHER_FAMILY),
    ("fps", OTHER_FAMILY),
    ("cfg_scale", OTHER_FAMILY),
    ("motion_strength", OTHER_FAMILY),
    ("kling_elements", OTHER_FAMILY),
    ("reference_image_type", OTHER_FAMILY),
    ("referenceImageType", OTHER_FAMILY),
    ("effect_type", OTHER_FAMILY),
    ("extend_at", OTHER_FAMILY),
    ("extend_times", OTHER_FAMILY),
    (
        "size",
        "belongs to another model family and is not supported by Seedance models; use `resolution` and `aspect_ratio`.",
    ),
    (
        "audio_url",
        "belongs to another model family and is not supported by Seedance models; Seedance takes audio as `audio_urls` of `reference-to-video`.",
    ),
    (
        "frames",
        "is not supported by Seedance 2.0 models; use `duration`.",
    ),
];

/// Operations the platform offers with other model families only.
const OTHER_FAMILY_OPERATIONS: [&str; 2] = ["audio-to-video", "motion-control"];

/// Longest prompt, in Unicode scalar values (docs/requests.md: 1–5,000 characters).
pub const MAX_PROMPT_CHARS: usize = 5000;
/// Longest http(s) URL accepted for media or callbacks.
pub const MAX_URL_CHARS: usize = 4096;
/// Largest decoded image in a data: URI (10 MiB).
pub const MAX_IMAGE_DATA_BYTES: usize = 10 * MIB;
/// Largest decoded video in a data: URI (50 MiB).
pub const MAX_VIDEO_DATA_BYTES: usize = 50 * MIB;
/// Largest decoded audio in a data: URI (15 MiB).
pub const MAX_AUDIO_DATA_BYTES: usize = 15 * MIB;
/// Smallest and largest image side upstream accepts, in pixels.
pub const IMAGE_SIDE_PX: std::ops::RangeInclusive<usize> = 300..=6000;
/// Ark's seed range; -1 asks for a random seed.
pub const SEED_RANGE: std::ops::RangeInclusive<i64> = -1..=4_294_967_295;
/// Seconds the upstream may be given to finish a task (the platform's documented range).
pub const EXECUTION_EXPIRES_AFTER: std::ops::RangeInclusive<u32> = 3_600..=259_200;
/// Upstream queue priorities.
pub const PRIORITY: std::ops::RangeInclusive<u8> = 0..=9;
/// Longest `safety_identifier` accepted: the platform documents 64 characters on its Seedance
/// task endpoint and 128 on the generic one; the smaller is what Seedance is known to take.
pub const MAX_SAFETY_IDENTIFIER_CHARS: usize = 64;

const MIB: usize = 1024 * 1024;

fn invalid(code: ErrorCode, param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message).with_param(param)
}

fn names<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn name_list<T: fmt::Display>(items: &[T]) -> Value {
    items.iter().map(|i| Value::from(i.to_string())).collect()
}

/// `model_not_found` with the ids a client could use instead.
pub(crate) fn model_not_found(catalog: &Catalog, id: &str) -> ApiError {
    let ids: Vec<&str> = catalog.models().iter().map(|m| m.id.as_str()).collect();
    ApiError::new(
        ErrorCode::UnknownModel,
        format!(
            "The model `{id}` does not exist. Available models: {}.",
            ids.join(", ")
        ),
    )
    .with_param("model")
    .with_extra("available_models", ids.into())
}

/// `material_asset_id` and `material_asset_ids` name material assets as generic references:
/// each becomes an `asset://<id>` entry of `reference_images` (and counts against its limit).
/// To give a material another role, put `asset://<id>` in `image_url`, `start_image` or
/// `end_image`.
fn with_material_references(mut map: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut references = Vec::new();
    for field in ["material_asset_id", "material_asset_ids"] {
        let ids = match map.remove(field) {
            None | Some(Value::Null) => continue,
            Some(Value::String(id)) if field == "material_asset_id" => vec![Value::String(id)],
            Some(Value::Array(ids)) if field == "material_asset_ids" && !ids.is_empty() => ids,
            Some(_) => {
                let shape = if field == "material_asset_id" {
                    "a material asset id"
                } else {
                    "a non-empty array of material asset ids"
                };
                return Err(invalid(
                    ErrorCode::InvalidType,
                    field,
                    format!("`{field}` must be {shape}."),
                ));
            }
        };
        for id in ids {
            let reference = id.as_str().map(|id| format!("asset://{id}"));
            match reference {
                Some(reference) if is_asset_reference(&reference) => {
                    references.push(Value::String(reference));
                }
                _ => {
                    return Err(invalid(
                        ErrorCode::InvalidMaterialAssetId,
                        field,
                        format!("`{field}`: a material asset id looks like asset-YYYYMMDDHHMMSS-xxxxx (14 digits, then 5 lower-case letters or digits)."),
                    ))
                }
            }
        }
    }
    if references.is_empty() {
        return Ok(map);
    }
    let sent: Vec<&str> = ["reference_images", "image_urls"]
        .into_iter()
        .filter(|name| map.get(*name).is_some_and(|v| !v.is_null()))
        .collect();
    let targets = if sent.is_empty() {
        vec!["reference_images"]
    } else {
        sent
    };
    for name in targets {
        // A value that is not a list is left for reading the field to report.
        if let Value::Array(list) = map.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
            list.extend(references.iter().cloned());
        }
    }
    Ok(map)
}

/// A create request that passed the contract: a new job, or the final of a draft, whose job
/// the server builds from the draft it names.
#[derive(Debug)]
pub enum CreateRequest {
    /// A video described in full.
    Job(Box<VideoJob>),
    /// A final: the draft's own request at another resolution.
    Final(FinalRequest),
}

/// Fields a final takes from its draft. Sending one with `draft_task_id` is a conflict: a
/// final never silently drops or overrides what its draft showed.
const FROM_THE_DRAFT: [&str; 20] = [
    "prompt",
    "aspect_ratio",
    "ratio",
    "duration",
    "seconds",
    "seed",
    "generate_audio",
    "output_audio",
    "outputAudio",
    "image_url",
    "image",
    "start_image",
    "end_image",
    "reference_images",
    "image_urls",
    "video_urls",
    "audio_urls",
    "video_url",
    "video",
    "task_id",
];

/// Parses and validates a create request against the catalog; see the module docs for the
/// order of the rules and their codes. Never panics, whatever the bytes.
pub fn parse_create_request(catalog: &Catalog, body: &[u8]) -> Result<CreateRequest, ApiError> {
    // 1. JSON, 2. schema.
    let entries = read_object(body)?;
    let known = |k: &str| FIELDS.contains(&k) || UNSUPPORTED_FIELDS.iter().any(|(f, _)| *f == k);
    if let Some((unknown, _)) = entries.iter().find(|(k, _)| !known(k)) {
        let hint = match closest_field(unknown) {
            Some(near) => format!(" Did you mean `{near}`?"),
            None => format!(" Accepted fields: {}.", FIELDS.join(", ")),
        };
        return Err(invalid(
            ErrorCode::UnknownField,
            unknown,
            format!("Unknown field `{unknown}`.{hint}"),
        ));
    }
    let map = with_material_references(entries.into_iter().collect())?;
    let map = crate::prompt_commands::apply(map)?;
    let raw = Raw::read(&Fields(&map))?;

    // 3. Model, 4. operation.
    let model = catalog
        .model(raw.model)
        .ok_or_else(|| model_not_found(catalog, raw.model))?;
    check_unsupported(&Fields(&map), &raw, model)?;
    if let Some(draft_task_id) = raw.draft_task_id {
        return parse_final(&Fields(&map), &raw, model, draft_task_id).map(CreateRequest::Final);
    }
    let operation = match raw.operation {
        Some(text) => check_operation(model, text)?,
        None => check_inferred_operation(model, infer_operation(&raw)?)?,
    };

    // 5. Inputs.
    let prompt = check_prompt(raw.prompt, operation)?;
    check_slots(&raw, model, operation)?;
    let media = raw.media();
    for m in &media {
        check_media_form(m)?;
    }
    let source_task_id = raw
        .task_id
        .map(|id| check_task_id("task_id", id))
        .transpose()?;
    let callback_url = raw.callback_url.map(check_callback_url).transpose()?;

    // 6. Limits.
    let draft = raw.draft == Some(true);
    let resolution = if draft {
        check_draft_resolution(model, raw.resolution)?
    } else {
        check_resolution(model, raw.resolution)?
    };
    let duration = check_duration(model, raw.duration)?;
    let aspect_ratio = check_aspect_ratio(model, operation, raw.aspect_ratio)?;
    let seed = raw.seed.map(check_seed).transpose()?;
    let settings = check_settings(model, &raw)?;
    check_reference_limits(model, &raw)?;
    for m in &media {
        check_media_content(m)?;
    }

    let media_input = |v: &str| MediaInput::checked(normalise_scheme(v));
    let one = |v: Option<&str>| v.map(media_input);
    let all = |v: &[&str]| v.iter().copied().map(media_input).collect();
    Ok(CreateRequest::Job(Box::new(VideoJob {
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
        inputs: JobInputs {
            image: one(raw.image.map(|s| s.value)),
            start_image: one(raw.start_image),
            end_image: one(raw.end_image),
            reference_images: all(&raw.reference_images.value),
            reference_videos: all(&raw.video_urls),
            reference_audios: all(&raw.audio_urls),
            video: one(raw.video.map(|s| s.value)),
            source_task_id,
        },
        return_last_frame: raw.return_last_frame.unwrap_or(false),
        service_tier: settings.service_tier,
        execution_expires_after: settings.execution_expires_after,
        priority: settings.priority,
        safety_identifier: settings.safety_identifier,
        output_format: settings.output_format,
        draft,
        final_of: None,
        scenario: None,
    })))
}

/// How a video is made and delivered, apart from what it shows: a final sets these itself.
struct Settings {
    service_tier: Option<ServiceTier>,
    execution_expires_after: Option<u32>,
    priority: Option<u8>,
    safety_identifier: Option<String>,
    output_format: OutputFormat,
}

fn check_settings(model: &ModelSpec, raw: &Raw<'_>) -> Result<Settings, ApiError> {
    Ok(Settings {
        service_tier: raw.service_tier.map(check_service_tier).transpose()?,
        execution_expires_after: raw
            .execution_expires_after
            .map(check_execution_expires_after)
            .transpose()?,
        priority: raw.priority.map(check_priority).transpose()?,
        safety_identifier: check_safety_identifier(raw)?,
        output_format: raw
            .output_format
            .map(|text| check_output_format(model, text))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// A final: what it sets for itself, once nothing it would take from its draft was sent.
fn parse_final(
    f: &Fields<'_>,
    raw: &Raw<'_>,
    model: &ModelSpec,
    draft_task_id: &str,
) -> Result<FinalRequest, ApiError> {
    let conflict =
        |field: &str, message: String| Err(invalid(ErrorCode::ConflictingInputs, field, message));
    if let Some(field) = FROM_THE_DRAFT
        .into_iter()
        .find(|field| f.get(field).is_some())
    {
        return conflict(
            field,
            format!("A final renders its draft's own `{field}`; remove it, or make a new draft to change it."),
        );
    }
    if raw.draft == Some(true) {
        return conflict(
            "draft",
            "A request is a draft or the final of one (`draft_task_id`), not both.".to_owned(),
        );
    }
    let draft_task_id = check_task_id("draft_task_id", draft_task_id)?;
    let operation = raw
        .operation
        .map(|text| check_operation(model, text))
        .transpose()?;
    let callback_url = raw.callback_url.map(check_callback_url).transpose()?;
    let resolution = check_resolution(model, raw.resolution)?;
    let settings = check_settings(model, raw)?;
    Ok(FinalRequest {
        model: model.id.clone(),
        draft_task_id,
        operation,
        resolution,
        watermark: raw.watermark.unwrap_or(false),
        return_last_frame: raw.return_last_frame.unwrap_or(false),
        callback_url,
        service_tier: settings.service_tier,
        execution_expires_after: settings.execution_expires_after,
        priority: settings.priority,
        safety_identifier: settings.safety_identifier,
        output_format: settings.output_format,
    })
}

// ---------------------------------------------------------------------------------------
// 1. JSON

/// A JSON object's entries in body order, duplicates kept (serde_json's `Map` would silently
/// keep the last one, letting `{"duration":4,"duration":15}` mean whatever a proxy or log
/// viewer thinks it means).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

fn read_object(body: &[u8]) -> Result<Vec<(String, Value)>, ApiError> {
    let Entries(entries) = serde_json::from_slice(body).map_err(|e| {
        // A well-formed value of another type fails as "data"; everything else is syntax.
        if e.classify() == serde_json::error::Category::Data {
            ApiError::new(
                ErrorCode::InvalidJson,
                "The request body must be a JSON object.",
            )
        } else {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("The request body is not valid JSON: {e}."),
            )
        }
    })?;
    let mut seen = HashSet::new();
    if let Some((key, _)) = entries.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(invalid(
            ErrorCode::InvalidJson,
            key,
            format!("The field `{key}` appears more than once."),
        ));
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------------------
// 2. Schema

/// The accepted field within two edits of a typo (`resolutoin` → `resolution`), if any.
fn closest_field(unknown: &str) -> Option<&'static str> {
    if unknown.chars().count() > 64 {
        return None;
    }
    FIELDS
        .into_iter()
        .map(|f| (edit_distance(unknown, f), f))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps, the usual typos).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A value and the name it was sent under (a field or its alias), so errors name what the
/// client actually wrote.
#[derive(Clone, Copy)]
struct Sent<T> {
    field: &'static str,
    value: T,
}

/// Typed access to the object, turning wrong types into `invalid_type`.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn wrong_type(key: &str, expected: &str) -> ApiError {
        invalid(
            ErrorCode::InvalidType,
            key,
            format!("`{key}` must be {expected}."),
        )
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Self::wrong_type(key, "a string")),
        }
    }

    /// Any JSON integer, held wide so an out-of-range one is reported by its range rule
    /// rather than as a type error.
    fn integer(&self, key: &str) -> Result<Option<i128>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .map(Some)
                .ok_or_else(|| Self::wrong_type(key, "a whole number")),
            Some(_) => Err(Self::wrong_type(key, "a whole number")),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(Self::wrong_type(key, "true or false")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<&'a str>, ApiError> {
        let wrong = || Self::wrong_type(key, "an array of strings");
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                items.iter().map(|i| i.as_str().ok_or_else(wrong)).collect()
            }
            Some(_) => Err(wrong()),
        }
    }

    /// A non-empty list of strings; `[]` is not sent.
    fn list(&self, key: &str) -> Result<Option<Vec<&'a str>>, ApiError> {
        Ok(Some(self.strings(key)?).filter(|v| !v.is_empty()))
    }

    /// A setting that may be sent under several names (primary first); all that are sent
    /// must agree, and the value keeps the first name sent.
    fn aliased<T: PartialEq>(
        &self,
        names: &[&'static str],
        read: impl Fn(&Self, &str) -> Result<Option<T>, ApiError>,
    ) -> Result<Option<Sent<T>>, ApiError> {
        let mut first: Option<Sent<T>> = None;
        for &name in names {
            let Some(value) = read(self, name)? else {
                continue;
            };
            match &first {
                Some(kept) if kept.value != value => {
                    return Err(invalid(
                        ErrorCode::AliasConflict,
                        name,
                        format!(
                        "`{}` and `{name}` are the same setting and disagree; send one of them.",
                        kept.field
                    ),
                    ))
                }
                Some(_) => {}
                None => first = Some(Sent { field: name, value }),
            }
        }
        Ok(first)
    }
}

/// The kinds of media input, each with its accepted types and size cap.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    Image,
    Video,
    Audio,
}

/// One media value of the request.
struct MediaValue<'a> {
    kind: Media,
    field: &'static str,
    value: &'a str,
}

/// The request after the schema step: known fields, right types, aliases folded.
struct Raw<'a> {
    model: &'a str,
    operation: Option<&'a str>,
    prompt: Option<&'a str>,
    resolution: Option<&'a str>,
    aspect_ratio: Option<Sent<&'a str>>,
    duration: Option<Sent<i128>>,
    seed: Option<i128>,
    generate_audio: Option<bool>,
    watermark: Option<bool>,
    return_last_frame: Option<bool>,
    service_tier: Option<&'a str>,
    output_format: Option<&'a str>,
    execution_expires_after: Option<i128>,
    priority: Option<i128>,
    safety_identifier: Option<&'a str>,
    user: Option<&'a str>,
    draft: Option<bool>,
    draft_task_id: Option<&'a str>,
    camera_fixed: Option<bool>,
    callback_url: Option<&'a str>,
    image: Option<Sent<&'a str>>,
    start_image: Option<&'a str>,
    end_image: Option<&'a str>,
    /// Empty when not sent; the name is then `reference_images`.
    reference_images: Sent<Vec<&'a str>>,
    video_urls: Vec<&'a str>,
    audio_urls: Vec<&'a str>,
    video: Option<Sent<&'a str>>,
    task_id: Option<&'a str>,
}

/// One input field that was sent, and the operation it asks for when `operation` is not sent.
#[derive(Clone, Copy)]
struct Input {
    field: &'static str,
    implies: Operation,
}

impl<'a> Raw<'a> {
    fn read(f: &Fields<'a>) -> Result<Self, ApiError> {
        let model = f
            .string("model")?
            .ok_or_else(|| invalid(ErrorCode::MissingField, "model", "`model` is required."))?;
        Ok(Raw {
            model,
            operation: f.string("operation")?,
            prompt: f.string("prompt")?,
            resolution: f.string("resolution")?,
            aspect_ratio: f.aliased(&["aspect_ratio", "ratio"], Fields::string)?,
            duration: f.aliased(&["duration", "seconds"], Fields::integer)?,
            seed: f.integer("seed")?,
            generate_audio: f
                .aliased(
                    &["generate_audio", "output_audio", "outputAudio"],
                    Fields::boolean,
                )?
                .map(|s| s.value),
            watermark: f.boolean("watermark")?,
            return_last_frame: f.boolean("return_last_frame")?,
            service_tier: f.string("service_tier")?,
            output_format: f.string("output_format")?,
            execution_expires_after: f.integer("execution_expires_after")?,
            priority: f.integer("priority")?,
            safety_identifier: f.string("safety_identifier")?,
            user: f.string("user")?,
            draft: f.boolean("draft")?,
            draft_task_id: f.string("draft_task_id")?,
            camera_fixed: f.boolean("camera_fixed")?,
            callback_url: f.string("callback_url")?,
            image: f.aliased(&["image_url", "image"], Fields::string)?,
            start_image: f.string("start_image")?,
            end_image: f.string("end_image")?,
            reference_images: f
                .aliased(&["reference_images", "image_urls"], Fields::list)?
                .unwrap_or(Sent {
                    field: "reference_images",
                    value: Vec::new(),
                }),
            video_urls: f.strings("video_urls")?,
            audio_urls: f.strings("audio_urls")?,
            video: f.aliased(&["video_url", "video"], Fields::string)?,
            task_id: f.string("task_id")?,
        })
    }

    /// The input fields sent (under the name sent), in a fixed order.
    fn inputs_sent(&self) -> Vec<Input> {
        use Operation::{
            ImageToVideo, ReferenceToVideo, StartEndToVideo, VideoExtension, VideoToVideo,
        };
        let mut sent = Vec::new();
        let mut push = |field, implies| sent.push(Input { field, implies });
        if let Some(s) = self.image {
            push(s.field, ImageToVideo);
        }
        if self.start_image.is_some() {
            push("start_image", StartEndToVideo);
        }
        if self.end_image.is_some() {
            push("end_image", StartEndToVideo);
        }
        for (field, list) in [
            (self.reference_images.field, &self.reference_images.value),
            ("video_urls", &self.video_urls),
            ("audio_urls", &self.audio_urls),
        ] {
            if !list.is_empty() {
                push(field, ReferenceToVideo);
            }
        }
        if let Some(s) = self.video {
            push(s.field, VideoToVideo);
        }
        if self.task_id.is_some() {
            push("task_id", VideoExtension);
        }
        sent
    }

    /// Every media value, in the order of `inputs_sent`.
    fn media(&self) -> Vec<MediaValue<'a>> {
        let mut media = Vec::new();
        let mut push = |kind, field, value| media.push(MediaValue { kind, field, value });
        if let Some(s) = self.image {
            push(Media::Image, s.field, s.value);
        }
        if let Some(v) = self.start_image {
            push(Media::Image, "start_image", v);
        }
        if let Some(v) = self.end_image {
            push(Media::Image, "end_image", v);
        }
        for (kind, field, list) in [
            (
                Media::Image,
                self.reference_images.field,
                &self.reference_images.value,
            ),
            (Media::Video, "video_urls", &self.video_urls),
            (Media::Audio, "audio_urls", &self.audio_urls),
        ] {
            for &v in list {
                push(kind, field, v);
            }
        }
        if let Some(s) = self.video {
            push(Media::Video, s.field, s.value);
        }
        media
    }
}

// ---------------------------------------------------------------------------------------
// 3. Model

/// A field of [`UNSUPPORTED_FIELDS`], in that table's order, then `draft` or `camera_fixed`
/// set to `true`. Checked once the model is known, so a body meant for another platform model
/// is told `model_not_found` first.
fn check_unsupported(f: &Fields<'_>, raw: &Raw<'_>, model: &ModelSpec) -> Result<(), ApiError> {
    let refuse = |field: &str, why: &str| {
        Err(invalid(
            ErrorCode::UnsupportedParameter,
            field,
            format!("`{field}` {why}"),
        ))
    };
    if let Some((field, why)) = UNSUPPORTED_FIELDS
        .iter()
        .find(|(field, _)| f.get(field).is_some())
    {
        return refuse(field, why);
    }
    if raw.draft_task_id.is_some() && model.draft.is_none() {
        return refuse(
            "draft_task_id",
            &format!(
                "names a draft to render as a final, and `{}` makes no drafts here; leave it out.",
                model.id
            ),
        );
    }
    if raw.draft == Some(true) && model.draft.is_none() {
        return refuse(
            "draft",
            &format!(
                "`true` asks for a draft, which `{}` does not make here; omit it or send false.",
                model.id
            ),
        );
    }
    if raw.camera_fixed == Some(true) {
        return refuse(
            "camera_fixed",
            "`true` is not supported by Seedance 2.0 models; omit it or send false, and describe the camera in the prompt.",
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Operation

fn unsupported_operation(model: &ModelSpec, message: String) -> ApiError {
    invalid(
        ErrorCode::UnsupportedOperation,
        "operation",
        format!("{message} Use one of {}.", names(&model.operations)),
    )
    .with_extra("allowed_operations", name_list(&model.operations))
}

fn check_operation(model: &ModelSpec, text: &str) -> Result<Operation, ApiError> {
    let parsed = text.parse::<Operation>().ok();
    match parsed {
        Some(op) if model.operations.contains(&op) => Ok(op),
        Some(_) => Err(unsupported_operation(
            model,
            format!("`{}` does not support the operation `{text}`.", model.id),
        )),
        None if OTHER_FAMILY_OPERATIONS.contains(&text) => Err(unsupported_operation(
            model,
            format!("`{text}` is offered by other model families, not by Seedance models."),
        )),
        None => Err(unsupported_operation(
            model,
            format!("`{text}` is not an operation."),
        )),
    }
}

/// The operation a request without `operation` asks for: the one every input sent implies,
/// text-to-video when none is sent. The platform infers it, so its clients leave it out.
/// Inputs that imply different operations are refused rather than ranked: any ranking would
/// be a guess about a paid request.
fn infer_operation(raw: &Raw<'_>) -> Result<Operation, ApiError> {
    let sent = raw.inputs_sent();
    let Some(first) = sent.first() else {
        return Ok(Operation::TextToVideo);
    };
    match sent.iter().find(|i| i.implies != first.implies) {
        None => Ok(first.implies),
        Some(other) => Err(invalid(
            ErrorCode::AmbiguousOperation,
            other.field,
            format!(
                "Without `operation`, `{}` asks for `{}` but `{}` asks for `{}`; send `operation` and only the inputs it takes.",
                first.field, first.implies, other.field, other.implies
            ),
        )),
    }
}

fn check_inferred_operation(
    model: &ModelSpec,
    operation: Operation,
) -> Result<Operation, ApiError> {
    if model.operations.contains(&operation) {
        Ok(operation)
    } else {
        Err(unsupported_operation(
            model,
            format!(
                "`{}` does not support `{operation}`, the operation these inputs ask for.",
                model.id
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// 5. Inputs

fn check_prompt(prompt: Option<&str>, operation: Operation) -> Result<Option<String>, ApiError> {
    let Some(prompt) = prompt else {
        if operation == Operation::VideoExtension {
            return Ok(None);
        }
        return Err(invalid(
            ErrorCode::MissingField,
            "prompt",
            format!("`prompt` is required for `{operation}`."),
        ));
    };
    // NUL and the other C0/C1 controls are no text a model can use, are invisible in logs,
    // and NUL is cut short or refused by C-string and database layers downstream. Line breaks
    // and tabs are how people lay out long prompts, so they stay.
    let control = prompt
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if let Some((index, c)) = control {
        return Err(invalid(
            ErrorCode::InvalidPrompt,
            "prompt",
            format!(
                "`prompt` contains the control character U+{:04X} at character index {index} (counting from 0); only line breaks and tabs are allowed.",
                u32::from(c)
            ),
        ));
    }
    let chars = prompt.chars().count();
    if prompt.trim().is_empty() || chars > MAX_PROMPT_CHARS {
        let blank = if chars > 0 && prompt.trim().is_empty() {
            ", all whitespace"
        } else {
            ""
        };
        return Err(invalid(
            ErrorCode::InvalidPrompt,
            "prompt",
            format!(
                "`prompt` must be 1 to {MAX_PROMPT_CHARS} characters of text (got {chars}{blank})."
            ),
        ));
    }
    Ok(Some(prompt.to_owned()))
}

/// Whether the operation takes the input (docs/requests.md): each takes the inputs that
/// imply it, video-extension also takes a source video (`video_url`), and reference audio
/// goes with the operations the model's entry names.
fn accepts(model: &ModelSpec, operation: Operation, input: Input) -> bool {
    if input.field == "audio_urls" {
        return model.takes_audio(operation);
    }
    input.implies == operation
        || (operation == Operation::VideoExtension && input.implies == Operation::VideoToVideo)
}

/// Fields the operation rejects, then fields it needs.
fn check_slots(raw: &Raw<'_>, model: &ModelSpec, operation: Operation) -> Result<(), ApiError> {
    if let Some(Input { field, .. }) = raw
        .inputs_sent()
        .into_iter()
        .find(|i| !accepts(model, operation, *i))
    {
        return Err(if field == "audio_urls" {
            let takers: Vec<Operation> = Operation::ALL
                .into_iter()
                .filter(|o| model.takes_audio(*o))
                .collect();
            invalid(
                ErrorCode::AudioNotAllowed,
                field,
                format!(
                    "`{}` takes audio (`audio_urls`) only with {}, not with `{operation}`.",
                    model.id,
                    names(&takers)
                ),
            )
        } else {
            invalid(
                ErrorCode::InputNotAllowed,
                field,
                format!("`{field}` is not an input of `{operation}`."),
            )
        });
    }
    let missing = |field: &str, what: &str| {
        invalid(
            ErrorCode::MissingField,
            field,
            format!("`{operation}` needs {what}."),
        )
    };
    match operation {
        Operation::TextToVideo => Ok(()),
        Operation::ImageToVideo if raw.image.is_none() => {
            Err(missing("image_url", "`image_url` (the first frame)"))
        }
        Operation::ImageToVideo => Ok(()),
        Operation::StartEndToVideo if raw.start_image.is_none() => {
            Err(missing("start_image", "`start_image` and `end_image`"))
        }
        Operation::StartEndToVideo if raw.end_image.is_none() => {
            Err(missing("end_image", "`start_image` and `end_image`"))
        }
        Operation::StartEndToVideo => Ok(()),
        Operation::ReferenceToVideo
            if raw.reference_images.value.is_empty()
                && raw.video_urls.is_empty()
                && (raw.audio_urls.is_empty() || !model.audio_only_references) =>
        {
            Err(if raw.audio_urls.is_empty() {
                invalid(
                    ErrorCode::MissingVisualReference,
                    "reference_images",
                    "`reference-to-video` needs at least one of `reference_images` or `video_urls`.",
                )
            } else {
                invalid(
                    ErrorCode::AudioRequiresVisualReference,
                    "audio_urls",
                    "Audio references need at least one image or video reference (`reference_images` or `video_urls`).",
                )
            })
        }
        Operation::ReferenceToVideo => Ok(()),
        Operation::VideoToVideo if raw.video.is_none() => {
            Err(missing("video_url", "`video_url` (the video to edit)"))
        }
        Operation::VideoToVideo => Ok(()),
        Operation::VideoExtension => match (raw.task_id, raw.video) {
            (Some(_), Some(video)) => Err(invalid(
                ErrorCode::ConflictingInputs,
                video.field,
                format!(
                    "Send either `task_id` or `{}` to extend, not both.",
                    video.field
                ),
            )),
            (None, None) => Err(missing(
                "task_id",
                "`task_id` (one of your completed tasks) or `video_url`",
            )),
            _ => Ok(()),
        },
    }
}

/// `vtask_` + a canonical (upper-case Crockford base32) ULID: the ids this gateway issues.
/// How `/v1` spells a task id: `vtask_` and a ULID.
pub const TASK_ID_PREFIX: &str = "vtask_";
/// How the Ark-compatible surface spells the same id: `cgt-` and the same ULID.
pub const ARK_TASK_ID_PREFIX: &str = "cgt-";

/// A task id in `/v1`'s spelling, whichever surface's spelling it came in: a client may carry
/// an id from one surface to the other.
pub fn canonical_task_id(id: &str) -> String {
    match id.strip_prefix(ARK_TASK_ID_PREFIX) {
        Some(ulid) => format!("{TASK_ID_PREFIX}{ulid}"),
        None => id.to_owned(),
    }
}

fn check_task_id(field: &str, task_id: &str) -> Result<String, ApiError> {
    let task_id = canonical_task_id(task_id);
    let ulid = task_id.strip_prefix(TASK_ID_PREFIX).unwrap_or_default();
    let crockford = |c: char| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c));
    // A ULID's first character carries the top 3 bits of a 48-bit time: 0–7 only.
    let valid = ulid.len() == 26
        && ulid.chars().all(crockford)
        && ulid.starts_with(|c: char| ('0'..='7').contains(&c));
    if valid {
        Ok(task_id)
    } else {
        Err(invalid(
            ErrorCode::InvalidTaskId,
            field,
            format!("`{field}` must be the id of one of your tasks (`vtask_` or `cgt-` followed by 26 characters)."),
        ))
    }
}

/// An `http://` or `https://` URL with a plausible host and port, at most
/// [`MAX_URL_CHARS`], without whitespace or control characters. Deliberately not a full URL
/// parser: what the gateway fetches goes through its guarded client anyway.
fn is_web_url(url: &str) -> bool {
    if url.len() > MAX_URL_CHARS || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let (host_ok, port) = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, after)) => (
                !addr.is_empty()
                    && addr
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || ":.".contains(c)),
                after.strip_prefix(':'),
            ),
            None => (false, None),
        }
    } else {
        let (host, port) = match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        };
        let host_ok = !host.is_empty()
            && !host.starts_with(['.', '-'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        (host_ok, port)
    };
    let port_ok = port.is_none_or(|p| {
        p.len() <= 5
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    host_ok && port_ok
}

/// The URL with its scheme (what precedes the first `:`) in lower case and the rest as sent.
/// Schemes are case-insensitive (RFC 3986 §3.1), but the media fetcher and the callback
/// sender compare them exactly: the job carries the one spelling they know.
fn normalise_scheme(url: &str) -> String {
    match url.split_once(':') {
        Some((scheme, rest)) => format!("{}:{rest}", scheme.to_ascii_lowercase()),
        None => url.to_owned(),
    }
}

fn check_callback_url(url: &str) -> Result<String, ApiError> {
    if is_web_url(url) {
        Ok(normalise_scheme(url))
    } else {
        Err(invalid(
            ErrorCode::InvalidCallbackUrl,
            "callback_url",
            "`callback_url` must be an http:// or https:// URL.",
        ))
    }
}

/// Whether the value is `asset://asset-YYYYMMDDHHMMSS-xxxxx`: a material of the platform's
/// library, by the id pattern the platform publishes (`^asset-\d{14}-[a-z0-9]{5}$`). Only
/// the syntax is checked here; the server resolves the material.
fn is_asset_reference(value: &str) -> bool {
    let Some(id) = value
        .split_once("://")
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("asset"))
        .and_then(|(_, rest)| rest.strip_prefix("asset-"))
    else {
        return false;
    };
    let id = id.as_bytes();
    id.len() == 20
        && id[..14].iter().all(u8::is_ascii_digit)
        && id[14] == b'-'
        && id[15..]
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// The form of a media value: a web URL, a base64 data URI, or for images an asset
/// reference. Its content is a limit, checked later.
fn check_media_form(m: &MediaValue<'_>) -> Result<(), ApiError> {
    let field = m.field;
    let has_scheme = |name: &str| {
        m.value
            .split_once(':')
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case(name))
    };
    if has_scheme("asset") {
        return match m.kind {
            Media::Image if is_asset_reference(m.value) => Ok(()),
            Media::Image => Err(invalid(
                ErrorCode::InvalidMediaUrl,
                field,
                format!("`{field}`: an asset reference must look like asset://asset-YYYYMMDDHHMMSS-xxxxx (14 digits, then 5 lower-case letters or digits)."),
            )),
            kind => Err(invalid(
                ErrorCode::InvalidMediaUrl,
                field,
                format!(
                    "`{field}`: asset references are accepted for images only; a {} must be an https:// or http:// URL or a base64 data: URI.",
                    kind.name()
                ),
            )),
        };
    }
    if strip_data_scheme(m.value).is_some() {
        if DataUri::parse(m.value).is_none() {
            return Err(invalid(
                ErrorCode::InvalidMediaUrl,
                field,
                format!("`{field}`: a data URI must look like data:<type>;base64,<data>."),
            ));
        }
        return Ok(());
    }
    if !is_web_url(m.value) {
        let asset = if m.kind == Media::Image {
            ", a base64 data: URI or an asset://asset-… reference"
        } else {
            " or a base64 data: URI"
        };
        return Err(invalid(
            ErrorCode::InvalidMediaUrl,
            field,
            format!("`{field}` must be an https:// or http:// URL{asset}."),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Limits

fn check_resolution(model: &ModelSpec, resolution: Option<&str>) -> Result<Resolution, ApiError> {
    let Some(text) = resolution else {
        return Ok(model.default_resolution);
    };
    text.parse::<Resolution>()
        .ok()
        .filter(|r| model.resolutions.contains(r))
        .ok_or_else(|| {
            invalid(
                ErrorCode::UnsupportedResolution,
                "resolution",
                format!(
                    "`{}` does not offer resolution `{text}`; use one of {}.",
                    model.id,
                    names(&model.resolutions)
                ),
            )
            .with_extra("allowed_resolutions", name_list(&model.resolutions))
        })
}

/// A draft is made at its model's draft resolution: naming another is an error, never a
/// silent change.
fn check_draft_resolution(
    model: &ModelSpec,
    resolution: Option<&str>,
) -> Result<Resolution, ApiError> {
    let Some(spec) = model.draft else {
        return check_resolution(model, resolution);
    };
    match resolution {
        Some(text) if text != spec.resolution.as_str() => Err(invalid(
            ErrorCode::UnsupportedResolution,
            "resolution",
            format!(
                "A draft of `{}` is made at {}; leave `resolution` out or send `{}` (got `{text}`).",
                model.id, spec.resolution, spec.resolution
            ),
        )
        .with_extra("allowed_resolutions", name_list(&[spec.resolution]))),
        _ => Ok(spec.resolution),
    }
}

fn check_duration(
    model: &ModelSpec,
    duration: Option<Sent<i128>>,
) -> Result<DurationRequest, ApiError> {
    let range = model.duration;
    let Some(Sent { field, value }) = duration else {
        return Ok(DurationRequest::Seconds(range.default));
    };
    if value == -1 {
        return Ok(DurationRequest::ModelDecides);
    }
    u32::try_from(value)
        .ok()
        .filter(|s| (range.min..=range.max).contains(s))
        .map(DurationRequest::Seconds)
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidDuration,
                field,
                format!(
                    "`{field}` must be {} to {} seconds, or -1 to let the model decide (got {value}).",
                    range.min, range.max
                ),
            )
            .with_extra("min", range.min.into())
            .with_extra("max", range.max.into())
        })
}

/// `adaptive` is the default and valid for every operation: with an image or video input the
/// model follows its shape, with a prompt alone it picks the shape itself. The reservation
/// counts the largest size of the tier either way.
///
/// Where the model's entry says an operation's output follows its input's shape, only
/// `adaptive` is accepted: the upstream would refuse anything else (`TaskTypeConstraint`).
fn check_aspect_ratio(
    model: &ModelSpec,
    operation: Operation,
    ratio: Option<Sent<&str>>,
) -> Result<AspectRatio, ApiError> {
    let Some(Sent { field, value: text }) = ratio else {
        return Ok(AspectRatio::DEFAULT);
    };
    let ratio = text
        .parse::<AspectRatio>()
        .ok()
        .filter(|r| model.aspect_ratios.contains(r))
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidAspectRatio,
                field,
                format!(
                    "`{field}` must be one of {} (got `{text}`).",
                    names(&model.aspect_ratios)
                ),
            )
            .with_extra("allowed_aspect_ratios", name_list(&model.aspect_ratios))
        })?;
    if ratio != AspectRatio::Adaptive && model.adaptive_only(operation) {
        return Err(invalid(
            ErrorCode::InvalidAspectRatio,
            field,
            format!(
                "`{}` makes `{operation}` in the shape of its input: `{field}` must be `adaptive` (got `{text}`); send `adaptive` or leave `{field}` out.",
                model.id
            ),
        )
        .with_extra(
            "allowed_aspect_ratios",
            name_list(&[AspectRatio::Adaptive]),
        ));
    }
    Ok(ratio)
}

fn check_seed(seed: i128) -> Result<i64, ApiError> {
    i64::try_from(seed)
        .ok()
        .filter(|s| SEED_RANGE.contains(s))
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidSeed,
                "seed",
                format!(
                    "`seed` must be between {} and {} (got {seed}).",
                    SEED_RANGE.start(),
                    SEED_RANGE.end()
                ),
            )
            .with_extra("min", (*SEED_RANGE.start()).into())
            .with_extra("max", (*SEED_RANGE.end()).into())
        })
}

/// The upstream's processing tiers for Seedance 2.0: `default` only; the platform refuses
/// `flex` for these models, and so does Seedgate rather than run a request on another tier.
fn check_service_tier(text: &str) -> Result<ServiceTier, ApiError> {
    text.parse::<ServiceTier>().map_err(|_| {
        let why = if text == "flex" {
            "Seedance 2.0 models do not support the `flex` tier".to_owned()
        } else {
            format!("`{text}` is not a service tier")
        };
        invalid(
            ErrorCode::UnsupportedServiceTier,
            "service_tier",
            format!("{why}; send `default` or omit `service_tier`."),
        )
        .with_extra("allowed_service_tiers", vec!["default"].into())
    })
}

/// One of the containers the model's entry offers.
fn check_output_format(model: &ModelSpec, text: &str) -> Result<OutputFormat, ApiError> {
    text.parse::<OutputFormat>()
        .ok()
        .filter(|format| model.output_formats.contains(format))
        .ok_or_else(|| {
            invalid(
                ErrorCode::UnsupportedOutputFormat,
                "output_format",
                format!(
                    "`{}` makes {}; `output_format` cannot be `{text}`.",
                    model.id,
                    names(&model.output_formats)
                ),
            )
            .with_extra("allowed_output_formats", name_list(&model.output_formats))
        })
}

/// A whole number within `range`, else `code` naming `field` with `min` and `max`.
fn in_range<T: TryFrom<i128> + Into<i64> + Copy>(
    code: ErrorCode,
    field: &str,
    what: &str,
    range: std::ops::RangeInclusive<T>,
    value: i128,
) -> Result<T, ApiError> {
    let (min, max) = ((*range.start()).into(), (*range.end()).into());
    T::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(&(*v).into()))
        .ok_or_else(|| {
            invalid(
                code,
                field,
                format!("`{field}` must be {what} from {min} to {max} (got {value})."),
            )
            .with_extra("min", min.into())
            .with_extra("max", max.into())
        })
}

fn check_execution_expires_after(seconds: i128) -> Result<u32, ApiError> {
    in_range(
        ErrorCode::InvalidExecutionExpiresAfter,
        "execution_expires_after",
        "seconds",
        EXECUTION_EXPIRES_AFTER,
        seconds,
    )
}

fn check_priority(priority: i128) -> Result<u8, ApiError> {
    in_range(
        ErrorCode::InvalidPriority,
        "priority",
        "a whole number",
        PRIORITY,
        priority,
    )
}

/// `safety_identifier`, or else `user`: the platform documents that `user` stands in for it
/// when it is absent, so `user` is then held to the same rules (the upstream takes at most
/// [`MAX_SAFETY_IDENTIFIER_CHARS`]). A `user` beside a `safety_identifier` is only a label
/// Seedgate has no use for.
fn check_safety_identifier(raw: &Raw<'_>) -> Result<Option<String>, ApiError> {
    let (field, value) = match (raw.safety_identifier, raw.user) {
        (Some(id), _) => ("safety_identifier", id),
        (None, Some(user)) => ("user", user),
        (None, None) => return Ok(None),
    };
    let chars = value.chars().count();
    if (1..=MAX_SAFETY_IDENTIFIER_CHARS).contains(&chars) && !value.chars().any(char::is_control) {
        return Ok(Some(value.to_owned()));
    }
    let stands_in = if field == "user" {
        " (`user` stands in for `safety_identifier` when that is not sent)"
    } else {
        ""
    };
    Err(invalid(
        ErrorCode::InvalidSafetyIdentifier,
        field,
        format!(
            "`{field}` must be 1 to {MAX_SAFETY_IDENTIFIER_CHARS} characters without control characters{stands_in}; got {chars} characters."
        ),
    )
    .with_extra("max_length", MAX_SAFETY_IDENTIFIER_CHARS.into()))
}

fn check_reference_limits(model: &ModelSpec, raw: &Raw<'_>) -> Result<(), ApiError> {
    let limits = model.reference_limits;
    for (field, count, limit) in [
        (
            raw.reference_images.field,
            raw.reference_images.value.len(),
            limits.images,
        ),
        ("video_urls", raw.video_urls.len(), limits.videos),
        ("audio_urls", raw.audio_urls.len(), limits.audios),
    ] {
        if count > limit {
            return Err(invalid(
                ErrorCode::TooManyReferences,
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
            Media::Image => MAX_IMAGE_DATA_BYTES,
            Media::Video => MAX_VIDEO_DATA_BYTES,
            Media::Audio => MAX_AUDIO_DATA_BYTES,
        }
    }

    /// Accepted declared types (lower case). Besides the registered names, the common
    /// unregistered spellings browsers and SDKs emit (`image/jpg`, `audio/mp3`, `audio/x-m4a`).
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
}

/// Whether the bytes start like the declared (lower-case, accepted) type.
fn content_matches(mime: &str, b: &[u8]) -> bool {
    let riff = |kind: &[u8]| b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == kind;
    // MP4 and QuickTime are ISO-BMFF: a box size then a box type; QuickTime files may open
    // with other top-level boxes than `ftyp`.
    let iso_bmff = b.len() >= 8
        && matches!(
            &b[4..8],
            b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free" | b"skip" | b"pnot"
        );
    let sync = b.len() >= 2 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0;
    // MPEG audio frames have a non-zero layer; ADTS (raw AAC) frames have layer 0.
    let mpeg_frame = sync && b[1] & 0x06 != 0;
    let adts = sync && b[1] & 0xF6 == 0xF0;
    match mime {
        "image/png" => b.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" | "image/jpg" => b.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/webp" => riff(b"WEBP"),
        "video/mp4" | "video/quicktime" => iso_bmff,
        "audio/mpeg" | "audio/mp3" => b.starts_with(b"ID3") || mpeg_frame,
        "audio/wav" | "audio/x-wav" | "audio/wave" => riff(b"WAVE"),
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => iso_bmff,
        // `audio/aac` is sent both for raw ADTS/ADIF streams and for .m4a files.
        "audio/aac" => adts || b.starts_with(b"ADIF") || iso_bmff,
        _ => false,
    }
}

/// The content of a data: URI: declared type, size (before and after decoding), base64,
/// magic bytes, and for images the dimensions. URLs pass: their content is only known when
/// fetched, where the server applies the same caps.
fn check_media_content(m: &MediaValue<'_>) -> Result<(), ApiError> {
    let Some(uri) = DataUri::parse(m.value) else {
        return Ok(());
    };
    let (kind, field) = (m.kind, m.field);
    let mime = uri.mime.to_ascii_lowercase();
    if !kind.mime_types().contains(&mime.as_str()) {
        return Err(invalid(
            ErrorCode::UnsupportedMediaType,
            field,
            format!(
                "`{field}`: {} is not an accepted {} type ({}).",
                uri.mime,
                kind.name(),
                kind.mime_types().join(", ")
            ),
        )
        .with_extra("allowed_media_types", kind.mime_types().into()));
    }
    let too_large = || {
        invalid(
            ErrorCode::MediaTooLarge,
            field,
            format!(
                "`{field}`: a {} data URI may hold at most {} MB.",
                kind.name(),
                kind.max_bytes() / MIB
            ),
        )
        .with_extra("limit_bytes", kind.max_bytes().into())
    };
    // Base64 carries 3 bytes per 4 characters: refuse an oversized payload before decoding it.
    let unpadded = uri.payload.trim_end_matches('=').len();
    if unpadded / 4 * 3 > kind.max_bytes() {
        return Err(too_large());
    }
    let bytes = BASE64.decode(uri.payload).map_err(|_| {
        invalid(
            ErrorCode::InvalidMediaUrl,
            field,
            format!("`{field}`: the data URI is not valid base64."),
        )
    })?;
    if bytes.len() > kind.max_bytes() {
        return Err(too_large());
    }
    if !content_matches(&mime, &bytes) {
        return Err(invalid(
            ErrorCode::UnsupportedMediaType,
            field,
            format!("`{field}`: the content is not {mime} as declared."),
        )
        .with_extra("allowed_media_types", kind.mime_types().into()));
    }
    if kind == Media::Image {
        check_image_dimensions(field, &bytes)?;
    }
    Ok(())
}

/// The upstream's rule for input images: 300–6000 px a side, aspect (width/height) 0.4–2.5.
/// Data URIs are held to it at create; fetched URLs when the task runs.
pub fn check_image_dimensions(field: &str, bytes: &[u8]) -> Result<(), ApiError> {
    let size = imagesize::blob_size(bytes).map_err(|_| {
        invalid(
            ErrorCode::UnsupportedMediaType,
            field,
            format!("`{field}`: the image header cannot be read."),
        )
    })?;
    let (w, h) = (size.width, size.height);
    // Aspect 0.4 ≤ w/h ≤ 2.5 in integers: 5w ≥ 2h and 2w ≤ 5h.
    let (wide, high) = (w as u128, h as u128);
    let aspect_ok = 5 * wide >= 2 * high && 2 * wide <= 5 * high;
    if !IMAGE_SIDE_PX.contains(&w) || !IMAGE_SIDE_PX.contains(&h) || !aspect_ok {
        return Err(invalid(
            ErrorCode::InvalidImageDimensions,
            field,
            format!(
                "`{field}` is {w}×{h}; images must be {}–{} px a side with an aspect ratio (width/height) of 0.4–2.5.",
                IMAGE_SIDE_PX.start(),
                IMAGE_SIDE_PX.end()
            ),
        )
        .with_extra("width", w.into())
        .with_extra("height", h.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_matched_to_the_closest_field() {
        assert_eq!(closest_field("resolutoin"), Some("resolution"));
        assert_eq!(closest_field("image_uri"), Some("image_url"));
        assert_eq!(closest_field("seeds"), Some("seed"));
        assert_eq!(closest_field("negative_prompt"), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn web_url_edge_cases() {
        assert!(is_web_url("https://e.com"));
        assert!(is_web_url("https://e.com:8080"));
        assert!(!is_web_url("https://e.com:"));
        assert!(!is_web_url("https://e.com:+80"));
        assert!(!is_web_url("https://[::1"));
        assert!(!is_web_url("https://[]/"));
        assert!(is_web_url("http://[::1]/x"));
    }
}
