//! Every rule of docs/requests.md and docs/models-and-pricing.md, one test per rule, named after
//! it, asserting the exact code and `param` (and the helpful extras).

use base64::Engine as _;
use serde_json::{json, Value};

use crate::job::{AspectRatio, DurationRequest, Operation, OutputFormat, Resolution, ServiceTier};
use crate::parse::UNSUPPORTED_FIELDS;
use crate::{
    parse_create_request, ApiError, Catalog, CreateRequest, ErrorCode, ErrorType, VideoJob,
    BUILTIN_CATALOG,
};

// ---------------------------------------------------------------------------------------
// Helpers

/// A request that must describe a new job, not a draft's final.
pub(crate) fn parse_job(catalog: &Catalog, body: &[u8]) -> Result<VideoJob, ApiError> {
    parse_create_request(catalog, body).map(|request| match request {
        CreateRequest::Job(job) => *job,
        CreateRequest::Final(request) => panic!("a final: {request:?}"),
    })
}

pub(crate) fn parse(body: Value) -> Result<VideoJob, ApiError> {
    parse_job(&Catalog::builtin(), body.to_string().as_bytes())
}

fn parse_bytes(body: &[u8]) -> Result<VideoJob, ApiError> {
    parse_job(&Catalog::builtin(), body)
}

fn accepted(body: Value) -> VideoJob {
    match parse(body.clone()) {
        Ok(job) => job,
        Err(e) => panic!("{body} should be accepted: {e:?}"),
    }
}

fn rejected(body: Value, code: &str, param: Option<&str>) -> ApiError {
    let err = parse(body.clone()).expect_err(&format!("{body} should be rejected"));
    assert_eq!(err.code.as_str(), code, "{body}: {err:?}");
    assert_eq!(err.status(), 400, "{body}");
    assert_eq!(err.param.as_deref(), param, "{body}: {err:?}");
    assert!(!err.message.is_empty());
    err
}

fn t2v(model: &str) -> Value {
    json!({"model": model, "operation": "text-to-video", "prompt": "a cat"})
}

/// The smallest valid body of each operation on seedance-2.0.
fn minimal(op: Operation) -> Value {
    let mut body = json!({"model": "seedance-2.0", "operation": op.as_str(), "prompt": "a cat"});
    match op {
        Operation::TextToVideo => {}
        Operation::ImageToVideo => body["image_url"] = IMG.into(),
        Operation::StartEndToVideo => {
            body["start_image"] = IMG.into();
            body["end_image"] = IMG.into();
        }
        Operation::ReferenceToVideo => body["reference_images"] = json!([IMG]),
        Operation::VideoToVideo => body["video_url"] = VID.into(),
        Operation::VideoExtension => body["video_url"] = VID.into(),
    }
    body
}

fn with(mut body: Value, key: &str, value: impl Into<Value>) -> Value {
    body[key] = value.into();
    body
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

const IMG: &str = "https://e.com/a.png";
const VID: &str = "https://e.com/v.mp4";
const AUD: &str = "https://e.com/a.wav";
const TASK: &str = "vtask_01JAAAAAAAAAAAAAAAAAAAAAAA";

fn urls(base: &str, n: usize) -> Value {
    (0..n).map(|i| format!("{base}?n={i}")).collect()
}

/// A PNG signature and IHDR: enough for type and dimension checks.
pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

/// A baseline JPEG's SOI and SOF0 marker: enough for type and dimension checks.
fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    bytes
}

/// A lossless WebP header (VP8L) with the given size.
fn webp(width: u32, height: u32) -> Vec<u8> {
    let bits = (width - 1) | ((height - 1) << 14);
    let mut chunk = vec![0x2F];
    chunk.extend_from_slice(&bits.to_le_bytes());
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(4 + 8 + chunk.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WEBPVP8L");
    bytes.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&chunk);
    bytes
}

fn mp4() -> Vec<u8> {
    let mut bytes = vec![0, 0, 0, 24];
    bytes.extend_from_slice(b"ftypisom");
    bytes.resize(64, 0);
    bytes
}

fn wav() -> Vec<u8> {
    [b"RIFF".as_slice(), &[36, 0, 0, 0], b"WAVEfmt "].concat()
}

pub(crate) fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn i2v(image: impl Into<Value>) -> Value {
    with(minimal(Operation::ImageToVideo), "image_url", image)
}

fn r2v(key: &str, value: Value) -> Value {
    with(minimal(Operation::ReferenceToVideo), key, value)
}

/// The built-in catalog with one edit inside the entry of `model`.
fn catalog_with(model: &str, from: &str, to: &str) -> Catalog {
    let at = BUILTIN_CATALOG.find(&format!("id = \"{model}\"")).unwrap();
    let (head, tail) = BUILTIN_CATALOG.split_at(at);
    assert!(tail.contains(from), "{from}");
    Catalog::from_toml(&format!("{head}{}", tail.replacen(from, to, 1))).unwrap()
}

// ---------------------------------------------------------------------------------------
// Defaults

#[test]
fn minimal_text_to_video_gets_the_defaults() {
    let job = accepted(t2v("seedance-2.0"));
    assert_eq!(job.model, "seedance-2.0");
    assert_eq!(job.operation, Operation::TextToVideo);
    assert_eq!(job.prompt.as_deref(), Some("a cat"));
    assert_eq!(job.resolution, Resolution::P720);
    assert_eq!(job.aspect_ratio, AspectRatio::Adaptive);
    assert_eq!(job.duration, DurationRequest::Seconds(5));
    assert_eq!(job.seed, None);
    assert!(job.generate_audio);
    assert!(!job.watermark);
    assert_eq!(job.callback_url, None);
    assert_eq!(job.inputs, Default::default());
    assert!(!job.return_last_frame);
    assert_eq!(job.service_tier, None);
    assert_eq!(job.execution_expires_after, None);
    assert_eq!(job.priority, None);
    assert_eq!(job.safety_identifier, None);
}

#[test]
fn omitted_aspect_ratio_is_adaptive_for_every_operation() {
    for op in Operation::ALL {
        assert_eq!(
            accepted(minimal(op)).aspect_ratio,
            AspectRatio::Adaptive,
            "{op}"
        );
    }
}

#[test]
fn defaults_come_from_the_catalog() {
    let text = BUILTIN_CATALOG
        .replacen(
            "default_resolution = \"720p\"",
            "default_resolution = \"480p\"",
            1,
        )
        .replacen("max = 15, default = 5", "max = 15, default = 8", 1);
    let catalog = Catalog::from_toml(&text).unwrap();
    let job = parse_job(&catalog, t2v("seedance-2.0").to_string().as_bytes()).unwrap();
    assert_eq!(job.resolution, Resolution::P480);
    assert_eq!(job.duration, DurationRequest::Seconds(8));
}

#[test]
fn every_field_is_carried_into_the_job() {
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "p",
        "resolution": "1080p", "aspect_ratio": "21:9", "duration": 12, "seed": 7,
        "generate_audio": false, "watermark": true, "callback_url": "https://hooks.e.com/x",
        "return_last_frame": true, "service_tier": "default", "execution_expires_after": 7200,
        "priority": 3, "safety_identifier": "user-42"}),
    );
    assert_eq!(job.resolution, Resolution::P1080);
    assert_eq!(job.aspect_ratio, AspectRatio::W21H9);
    assert_eq!(job.duration, DurationRequest::Seconds(12));
    assert_eq!(job.seed, Some(7));
    assert!(!job.generate_audio);
    assert!(job.watermark);
    assert_eq!(job.callback_url.as_deref(), Some("https://hooks.e.com/x"));
    assert!(job.return_last_frame);
    assert_eq!(job.service_tier, Some(ServiceTier::Default));
    assert_eq!(job.execution_expires_after, Some(7200));
    assert_eq!(job.priority, Some(3));
    assert_eq!(job.safety_identifier.as_deref(), Some("user-42"));
}

#[test]
fn inputs_land_in_their_slots() {
    let job = accepted(i2v(IMG));
    assert_eq!(job.inputs.image.as_ref().unwrap().as_str(), IMG);
    let job = accepted(with(
        without(minimal(Operation::ImageToVideo), "image_url"),
        "image",
        IMG,
    ));
    assert_eq!(job.inputs.image.as_ref().unwrap().as_str(), IMG);
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "x",
        "start_image": "https://e.com/s.png", "end_image": "https://e.com/e.png"}),
    );
    assert_eq!(
        job.inputs.start_image.unwrap().as_str(),
        "https://e.com/s.png"
    );
    assert_eq!(
        job.inputs.end_image.unwrap().as_str(),
        "https://e.com/e.png"
    );
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x",
        "reference_images": [IMG], "video_urls": [VID], "audio_urls": [AUD]}),
    );
    assert_eq!(job.inputs.reference_images[0].as_str(), IMG);
    assert_eq!(job.inputs.reference_videos[0].as_str(), VID);
    assert_eq!(job.inputs.reference_audios[0].as_str(), AUD);
    assert!(job.has_video_input());
    let job = accepted(with(
        without(minimal(Operation::VideoToVideo), "video_url"),
        "video",
        VID,
    ));
    assert_eq!(job.inputs.video.unwrap().as_str(), VID);
}

// ---------------------------------------------------------------------------------------
// 1. JSON

#[test]
fn invalid_json_rejected() {
    for body in [
        &b"{\"model\":"[..],
        b"",
        b"{",
        b"{} {}",
        b"{\"a\" 1}",
        b"\xff\xfe",
        b"{'model':1}",
    ] {
        let err = parse_bytes(body).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.param.as_deref()),
            ("invalid_json", None),
            "{body:?}"
        );
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
    }
}

#[test]
fn body_that_is_not_an_object_rejected() {
    for body in [&b"[1,2]"[..], b"\"text\"", b"null", b"42", b"true"] {
        let err = parse_bytes(body).unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_json");
        assert!(err.message.contains("JSON object"), "{}", err.message);
    }
}

#[test]
fn duplicate_field_rejected() {
    let err = parse_bytes(
        br#"{"model":"seedance-2.0","operation":"text-to-video","prompt":"x","duration":4,"duration":15}"#,
    )
    .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param.as_deref()),
        ("invalid_json", Some("duration"))
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let body = format!(
        "{{\"model\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(
        parse_bytes(body.as_bytes()).unwrap_err().code,
        ErrorCode::InvalidJson
    );
}

// ---------------------------------------------------------------------------------------
// 2. Schema

#[test]
fn unknown_field_rejected() {
    let err = rejected(
        with(t2v("seedance-2.0"), "resolutoin", "720p"),
        "unknown_field",
        Some("resolutoin"),
    );
    assert!(
        err.message.contains("Did you mean `resolution`?"),
        "{}",
        err.message
    );
    let err = rejected(
        with(t2v("seedance-2.0"), "style_preset", "x"),
        "unknown_field",
        Some("style_preset"),
    );
    assert!(err.message.contains("Accepted fields"), "{}", err.message);
    // A field of the platform's native Seedance task shape, not of this endpoint.
    rejected(
        with(
            t2v("seedance-2.0"),
            "tools",
            json!([{"type": "web_search"}]),
        ),
        "unknown_field",
        Some("tools"),
    );
}

#[test]
fn unknown_field_rejected_even_when_null() {
    rejected(
        with(t2v("seedance-2.0"), "callback", Value::Null),
        "unknown_field",
        Some("callback"),
    );
}

#[test]
fn first_unknown_field_in_body_order_is_reported() {
    let err = parse_bytes(
        br#"{"zeta":1,"model":"seedance-2.0","operation":"text-to-video","prompt":"x","alpha":2}"#,
    )
    .unwrap_err();
    assert_eq!(err.param.as_deref(), Some("zeta"));
}

#[test]
fn field_names_are_case_sensitive() {
    rejected(
        with(t2v("seedance-2.0"), "Prompt", "x"),
        "unknown_field",
        Some("Prompt"),
    );
}

#[test]
fn wrong_types_rejected_with_invalid_type() {
    let cases: [(&str, Value); 28] = [
        ("model", json!(1)),
        ("operation", json!(["text-to-video"])),
        ("prompt", json!(5)),
        ("resolution", json!(720)),
        ("aspect_ratio", json!(1.5)),
        ("ratio", json!(true)),
        ("duration", json!("5")),
        ("seconds", json!(5.5)),
        ("seed", json!("42")),
        ("generate_audio", json!("true")),
        ("output_audio", json!(1)),
        ("watermark", json!(0)),
        ("callback_url", json!({"url": "https://e.com"})),
        ("image_url", json!([IMG])),
        ("reference_images", json!(IMG)),
        ("video_urls", json!([1])),
        ("task_id", json!(123)),
        ("outputAudio", json!("false")),
        ("return_last_frame", json!(1)),
        ("service_tier", json!(["default"])),
        ("execution_expires_after", json!("3600")),
        ("priority", json!(1.5)),
        ("safety_identifier", json!(42)),
        ("user", json!({"id": "u"})),
        ("draft", json!("false")),
        ("camera_fixed", json!(0)),
        ("image_urls", json!(IMG)),
        ("image_urls", json!([IMG, 2])),
    ];
    for (field, value) in cases {
        rejected(
            with(t2v("seedance-2.0"), field, value),
            "invalid_type",
            Some(field),
        );
    }
}

#[test]
fn fractional_duration_is_invalid_type() {
    rejected(
        with(t2v("seedance-2.0"), "duration", json!(5.0)),
        "invalid_type",
        Some("duration"),
    );
}

#[test]
fn missing_model_rejected() {
    rejected(
        without(t2v("seedance-2.0"), "model"),
        "missing_field",
        Some("model"),
    );
    rejected(
        with(t2v("seedance-2.0"), "model", Value::Null),
        "missing_field",
        Some("model"),
    );
}

#[test]
fn missing_prompt_rejected_for_every_operation_but_video_extension() {
    for op in Operation::ALL {
        let body = without(minimal(op), "prompt");
        if op == Operation::VideoExtension {
            assert_eq!(accepted(body).prompt, None);
        } else {
            rejected(body, "missing_field", Some("prompt"));
        }
    }
}

#[test]
fn seconds_and_duration_conflict_rejected() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "duration": 5, "seconds": 6}),
        "alias_conflict",
        Some("seconds"),
    );
}

#[test]
fn ratio_and_aspect_ratio_conflict_rejected() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "aspect_ratio": "1:1", "ratio": "16:9"}),
        "alias_conflict",
        Some("ratio"),
    );
}

#[test]
fn output_audio_and_generate_audio_conflict_rejected() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "generate_audio": true, "output_audio": false}),
        "alias_conflict",
        Some("output_audio"),
    );
}

#[test]
fn image_and_image_url_conflict_rejected() {
    rejected(
        with(i2v(IMG), "image", "https://e.com/b.png"),
        "alias_conflict",
        Some("image"),
    );
}

#[test]
fn video_and_video_url_conflict_rejected() {
    rejected(
        with(
            minimal(Operation::VideoToVideo),
            "video",
            "https://e.com/b.mp4",
        ),
        "alias_conflict",
        Some("video"),
    );
}

#[test]
fn agreeing_aliases_are_accepted() {
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x",
        "duration": 6, "seconds": 6, "ratio": "9:16", "aspect_ratio": "9:16",
        "output_audio": false, "generate_audio": false}),
    );
    assert_eq!(job.duration, DurationRequest::Seconds(6));
    assert_eq!(job.aspect_ratio, AspectRatio::W9H16);
    assert!(!job.generate_audio);
    let job = accepted(with(i2v(IMG), "image", IMG));
    assert_eq!(job.inputs.image.unwrap().as_str(), IMG);
}

#[test]
fn aliases_alone_are_accepted() {
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x",
        "seconds": 7, "ratio": "4:3", "output_audio": false}),
    );
    assert_eq!(job.duration, DurationRequest::Seconds(7));
    assert_eq!(job.aspect_ratio, AspectRatio::W4H3);
    assert!(!job.generate_audio);
}

#[test]
fn alias_with_null_partner_is_accepted() {
    let job = accepted(with(
        with(t2v("seedance-2.0"), "seconds", 8),
        "duration",
        Value::Null,
    ));
    assert_eq!(job.duration, DurationRequest::Seconds(8));
}

// ---------------------------------------------------------------------------------------
// 3. Model, 4. operation

#[test]
fn unknown_model_rejected() {
    let err = rejected(t2v("seedance-9"), "model_not_found", Some("model"));
    assert_eq!(err.error_type(), ErrorType::ModelNotFound);
    assert_eq!(
        err.extra["available_models"],
        json!([
            "seedance-2.0",
            "seedance-2.0-fast",
            "seedance-2.0-mini",
            "seedance-2.5"
        ])
    );
    assert_eq!(err.body()["error"]["type"], "model_not_found");
}

#[test]
fn model_ids_are_exact() {
    for id in [
        "Seedance-2.0",
        "seedance-2.0 ",
        "",
        "doubao-seedance-2-0-260128",
    ] {
        rejected(t2v(id), "model_not_found", Some("model"));
    }
}

#[test]
fn unknown_operation_rejected() {
    let err = rejected(
        with(t2v("seedance-2.0"), "operation", "text-to-image"),
        "unsupported_operation",
        Some("operation"),
    );
    assert_eq!(err.extra["allowed_operations"].as_array().unwrap().len(), 6);
    assert!(
        err.message.contains("text-to-video, image-to-video"),
        "{}",
        err.message
    );
    rejected(
        with(t2v("seedance-2.0"), "operation", "text_to_video"),
        "unsupported_operation",
        Some("operation"),
    );
}

#[test]
fn operation_the_model_lacks_rejected() {
    let catalog = catalog_with(
        "seedance-2.0-mini",
        "\"start-end-to-video\", \"reference-to-video\", \"video-to-video\", \"video-extension\"]",
        "\"start-end-to-video\"]",
    );
    let body = with(
        minimal(Operation::VideoToVideo),
        "model",
        "seedance-2.0-mini",
    )
    .to_string();
    let err = parse_job(&catalog, body.as_bytes()).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param.as_deref()),
        ("unsupported_operation", Some("operation"))
    );
    assert_eq!(
        err.extra["allowed_operations"],
        json!(["text-to-video", "image-to-video", "start-end-to-video"])
    );
}

// ---------------------------------------------------------------------------------------
// 5. Inputs: prompt

#[test]
fn empty_prompt_rejected() {
    rejected(
        with(t2v("seedance-2.0"), "prompt", ""),
        "invalid_prompt",
        Some("prompt"),
    );
}

#[test]
fn whitespace_prompt_rejected() {
    rejected(
        with(t2v("seedance-2.0"), "prompt", " \n\t "),
        "invalid_prompt",
        Some("prompt"),
    );
}

#[test]
fn prompt_over_5000_characters_rejected() {
    rejected(
        with(t2v("seedance-2.0"), "prompt", "字".repeat(5001)),
        "invalid_prompt",
        Some("prompt"),
    );
    // Characters, not bytes: 5,000 three-byte characters are fine.
    accepted(with(t2v("seedance-2.0"), "prompt", "字".repeat(5000)));
    accepted(with(t2v("seedance-2.0"), "prompt", "x"));
}

#[test]
fn video_extension_prompt_is_optional_but_checked() {
    let body = minimal(Operation::VideoExtension);
    accepted(without(body.clone(), "prompt"));
    rejected(with(body, "prompt", ""), "invalid_prompt", Some("prompt"));
}

#[test]
fn prompt_with_nul_is_refused() {
    for (prompt, index) in [("\u{0}", 0), ("a\u{0}b", 1), ("a cat\u{0}", 5)] {
        let err = rejected(
            with(t2v("seedance-2.0"), "prompt", prompt),
            "invalid_prompt",
            Some("prompt"),
        );
        let at = format!("U+0000 at character index {index}");
        assert!(err.message.contains(&at), "{prompt:?}: {}", err.message);
    }
    // Also when the prompt is optional.
    rejected(
        with(minimal(Operation::VideoExtension), "prompt", "a\u{0}b"),
        "invalid_prompt",
        Some("prompt"),
    );
}

#[test]
fn prompt_with_control_characters_is_refused_but_newlines_and_tabs_pass() {
    let controls =
        ('\u{0}'..='\u{9f}').filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    for c in controls {
        // `字` is three bytes: the reported position counts characters.
        let err = rejected(
            with(t2v("seedance-2.0"), "prompt", format!("字{c}x")),
            "invalid_prompt",
            Some("prompt"),
        );
        let at = format!("U+{:04X} at character index 1", u32::from(c));
        assert!(err.message.contains(&at), "{c:?}: {}", err.message);
    }
    rejected(
        with(
            minimal(Operation::VideoExtension),
            "prompt",
            "a\u{1b}[31mred",
        ),
        "invalid_prompt",
        Some("prompt"),
    );
    for prompt in [
        "line one\nline two",
        "line one\r\nline two",
        "\tindented\r",
        "a\tb",
        // Format characters such as the zero-width joiner are text, not controls.
        "👩\u{200d}💻 at work",
    ] {
        let job = accepted(with(t2v("seedance-2.0"), "prompt", prompt));
        assert_eq!(job.prompt.as_deref(), Some(prompt));
    }
    // Line breaks and tabs alone are still blank.
    rejected(
        with(t2v("seedance-2.0"), "prompt", "\r\n\t"),
        "invalid_prompt",
        Some("prompt"),
    );
}

// ---------------------------------------------------------------------------------------
// 5. Inputs: which fields each operation takes

/// Every media field with a valid value of its kind.
fn media_fields() -> [(&'static str, Value); 10] {
    [
        ("image_url", IMG.into()),
        ("image", IMG.into()),
        ("start_image", IMG.into()),
        ("end_image", IMG.into()),
        ("reference_images", json!([IMG])),
        ("video_urls", json!([VID])),
        ("audio_urls", json!([AUD])),
        ("video_url", VID.into()),
        ("video", VID.into()),
        ("task_id", TASK.into()),
    ]
}

fn takes(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::TextToVideo => &[],
        Operation::ImageToVideo => &["image_url", "image"],
        Operation::StartEndToVideo => &["start_image", "end_image"],
        Operation::ReferenceToVideo => &["reference_images", "video_urls", "audio_urls"],
        Operation::VideoToVideo => &["video_url", "video"],
        Operation::VideoExtension => &["video_url", "video", "task_id"],
    }
}

#[test]
fn each_operation_rejects_the_inputs_it_does_not_take() {
    for op in Operation::ALL {
        for (field, value) in media_fields() {
            if takes(op).contains(&field) {
                continue;
            }
            let code = if field == "audio_urls" {
                "audio_not_allowed"
            } else {
                "input_not_allowed"
            };
            rejected(with(minimal(op), field, value), code, Some(field));
        }
    }
}

#[test]
fn text_to_video_rejects_any_media_input() {
    rejected(
        with(t2v("seedance-2.0"), "image_url", IMG),
        "input_not_allowed",
        Some("image_url"),
    );
    rejected(
        with(t2v("seedance-2.0"), "video_url", VID),
        "input_not_allowed",
        Some("video_url"),
    );
    rejected(
        with(t2v("seedance-2.0"), "task_id", TASK),
        "input_not_allowed",
        Some("task_id"),
    );
}

#[test]
fn frame_inputs_never_mix_with_reference_inputs() {
    rejected(
        with(minimal(Operation::ReferenceToVideo), "start_image", IMG),
        "input_not_allowed",
        Some("start_image"),
    );
    rejected(
        with(
            minimal(Operation::ImageToVideo),
            "reference_images",
            json!([IMG]),
        ),
        "input_not_allowed",
        Some("reference_images"),
    );
    rejected(
        with(
            minimal(Operation::StartEndToVideo),
            "reference_images",
            json!([IMG]),
        ),
        "input_not_allowed",
        Some("reference_images"),
    );
}

#[test]
fn empty_lists_and_nulls_count_as_not_sent() {
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x",
        "reference_images": [], "video_urls": [], "audio_urls": [], "image_url": null, "task_id": null, "seed": null}),
    );
    assert_eq!(job.inputs, Default::default());
    assert_eq!(job.seed, None);
}

fn audio_outside_reference_to_video(op: Operation) {
    rejected(
        with(minimal(op), "audio_urls", json!([AUD])),
        "audio_not_allowed",
        Some("audio_urls"),
    );
}

#[test]
fn audio_outside_reference_to_video_rejected_text_to_video() {
    audio_outside_reference_to_video(Operation::TextToVideo);
}

#[test]
fn audio_outside_reference_to_video_rejected_image_to_video() {
    audio_outside_reference_to_video(Operation::ImageToVideo);
}

#[test]
fn audio_outside_reference_to_video_rejected_start_end_to_video() {
    audio_outside_reference_to_video(Operation::StartEndToVideo);
}

#[test]
fn audio_outside_reference_to_video_rejected_video_to_video() {
    audio_outside_reference_to_video(Operation::VideoToVideo);
}

#[test]
fn audio_outside_reference_to_video_rejected_video_extension() {
    audio_outside_reference_to_video(Operation::VideoExtension);
}

#[test]
fn audio_only_references_rejected() {
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x", "audio_urls": [AUD]});
    rejected(
        body.clone(),
        "audio_requires_visual_reference",
        Some("audio_urls"),
    );
    rejected(
        with(
            with(body, "reference_images", json!([])),
            "video_urls",
            json!([]),
        ),
        "audio_requires_visual_reference",
        Some("audio_urls"),
    );
}

#[test]
fn audio_with_a_video_reference_only_is_accepted() {
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x",
        "video_urls": [VID], "audio_urls": [AUD]}),
    );
    assert!(job.inputs.reference_images.is_empty());
}

#[test]
fn reference_to_video_without_visual_reference_rejected() {
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x"});
    rejected(
        body.clone(),
        "missing_visual_reference",
        Some("reference_images"),
    );
    rejected(
        with(body, "reference_images", json!([])),
        "missing_visual_reference",
        Some("reference_images"),
    );
}

#[test]
fn image_to_video_requires_an_image() {
    rejected(
        without(minimal(Operation::ImageToVideo), "image_url"),
        "missing_field",
        Some("image_url"),
    );
}

#[test]
fn start_end_to_video_requires_both_frames() {
    let body = minimal(Operation::StartEndToVideo);
    rejected(
        without(body.clone(), "end_image"),
        "missing_field",
        Some("end_image"),
    );
    rejected(
        without(body, "start_image"),
        "missing_field",
        Some("start_image"),
    );
}

#[test]
fn video_to_video_requires_a_video() {
    rejected(
        without(minimal(Operation::VideoToVideo), "video_url"),
        "missing_field",
        Some("video_url"),
    );
}

#[test]
fn video_extension_requires_a_task_id_or_a_video() {
    let err = rejected(
        json!({"model": "seedance-2.0", "operation": "video-extension"}),
        "missing_field",
        Some("task_id"),
    );
    assert!(err.message.contains("video_url"), "{}", err.message);
}

#[test]
fn video_extension_of_a_task() {
    let job =
        accepted(json!({"model": "seedance-2.0", "operation": "video-extension", "task_id": TASK}));
    assert_eq!(job.inputs.source_task_id.as_deref(), Some(TASK));
    assert!(job.prompt.is_none());
    assert!(job.has_video_input());
    assert_eq!(job.aspect_ratio, AspectRatio::Adaptive);
}

#[test]
fn video_extension_with_task_id_and_video_url_rejected() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-extension", "task_id": TASK, "video_url": VID}),
        "conflicting_inputs",
        Some("video_url"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-extension", "task_id": TASK, "video": VID}),
        "conflicting_inputs",
        Some("video"),
    );
}

#[test]
fn malformed_task_id_rejected() {
    let ulid = &TASK["vtask_".len()..];
    assert_eq!(ulid.len(), 26);
    let bad = [
        "cgt-20260617212928-5s755".to_owned(),
        "vtask_".to_owned(),
        format!("vtask_{}", &ulid[..25]),
        format!("vtask_{ulid}A"),
        format!("vtask_{}", ulid.to_lowercase()),
        format!("vtask_{}I", &ulid[..25]), // I is not Crockford base32
        format!("vtask_8{}", &ulid[1..]),  // overflows the 48-bit time
        ulid.to_owned(),
        format!("task_{ulid}"),
    ];
    for bad in bad {
        rejected(
            json!({"model": "seedance-2.0", "operation": "video-extension", "task_id": bad}),
            "invalid_task_id",
            Some("task_id"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Inputs: URLs

#[test]
fn media_url_not_http_or_data_rejected() {
    for bad in [
        "ftp://e.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "https://",
        "https:///a.png",
        "https://e.com:0/a.png",
        "https://e.com:99999/a.png",
        "https://-e.com/a.png",
        "https://e .com/a.png",
        "https://e.com/a b.png",
        "https://e.com/a\n.png",
        "//e.com/a.png",
        "e.com/a.png",
        "not a url",
        "",
    ] {
        rejected(i2v(bad), "invalid_media_url", Some("image_url"));
    }
    let long = format!("https://e.com/{}", "a".repeat(5000));
    rejected(i2v(long), "invalid_media_url", Some("image_url"));
}

#[test]
fn web_urls_of_many_shapes_are_accepted() {
    for good in [
        "http://e.com/a.png",
        "HTTPS://E.COM/A.PNG",
        "https://user:pw@cdn.e.com:8443/a/b.png?sig=1&x=%20#frag",
        "https://[2001:db8::1]:443/a.png",
        "https://127.0.0.1/a.png",
        "https://e.com",
        "https://my_bucket.s3.amazonaws.com/a.png",
    ] {
        accepted(i2v(good));
    }
}

#[test]
fn url_scheme_is_normalised_to_lower_case() {
    let job = accepted(i2v("HTTPS://E.COM/A.PNG?Sig=AbC"));
    assert_eq!(
        job.inputs.image.unwrap().as_str(),
        "https://E.COM/A.PNG?Sig=AbC"
    );
    let job = accepted(with(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x",
        "reference_images": ["HtTp://e.com/A.png"], "video_urls": ["HTTPS://e.com/V.mp4"],
        "audio_urls": ["Https://e.com/A.wav"]}),
        "callback_url",
        "HTTPS://Hooks.E.com/X",
    ));
    assert_eq!(
        job.inputs.reference_images[0].as_str(),
        "http://e.com/A.png"
    );
    assert_eq!(
        job.inputs.reference_videos[0].as_str(),
        "https://e.com/V.mp4"
    );
    assert_eq!(
        job.inputs.reference_audios[0].as_str(),
        "https://e.com/A.wav"
    );
    assert_eq!(job.callback_url.as_deref(), Some("https://Hooks.E.com/X"));
    let job = accepted(
        json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "x",
        "start_image": "HTTP://e.com/s.png", "end_image": "hTTps://e.com/e.png"}),
    );
    assert_eq!(
        job.inputs.start_image.unwrap().as_str(),
        "http://e.com/s.png"
    );
    assert_eq!(
        job.inputs.end_image.unwrap().as_str(),
        "https://e.com/e.png"
    );
    let job = accepted(with(
        minimal(Operation::VideoToVideo),
        "video_url",
        "HTTPS://e.com/v.mp4",
    ));
    assert_eq!(job.inputs.video.unwrap().as_str(), "https://e.com/v.mp4");

    // A data: URI's scheme too; its media type and payload stay as sent.
    let uri = data_uri("image/png", &png(640, 360));
    let job = accepted(i2v(uri.replacen("data:image/png", "DATA:IMAGE/PNG", 1)));
    let image = job.inputs.image.unwrap();
    assert_eq!(
        image.as_str(),
        uri.replacen("data:image/png", "data:IMAGE/PNG", 1)
    );
    assert!(image.is_data_uri());
    assert_eq!(image.data_bytes(), Some(png(640, 360)));

    // The case of a scheme never makes a refused one acceptable.
    for bad in [
        "FTP://e.com/a.png",
        "HTTPS://",
        "Javascript:alert(1)",
        "DATA:image/png,plain",
    ] {
        rejected(i2v(bad), "invalid_media_url", Some("image_url"));
    }
    rejected(
        with(t2v("seedance-2.0"), "callback_url", "FTP://e.com/hook"),
        "invalid_callback_url",
        Some("callback_url"),
    );
}

#[test]
fn malformed_data_uri_rejected() {
    for bad in [
        "data:image/png,plain",
        "data:image/png;base64",
        "data:;base64,AAAA",
        "data:,AAAA",
    ] {
        rejected(i2v(bad), "invalid_media_url", Some("image_url"));
    }
}

#[test]
fn bad_base64_rejected() {
    rejected(
        i2v("data:image/png;base64,@@@@"),
        "invalid_media_url",
        Some("image_url"),
    );
    let spaced = data_uri("image/png", &png(640, 360)).replacen('A', " A", 1);
    rejected(i2v(spaced), "invalid_media_url", Some("image_url"));
}

#[test]
fn bad_media_url_in_a_list_names_the_list() {
    rejected(
        r2v("reference_images", json!([IMG, "ftp://e.com/b.png"])),
        "invalid_media_url",
        Some("reference_images"),
    );
    rejected(
        with(
            minimal(Operation::ReferenceToVideo),
            "audio_urls",
            json!(["mailto:a@b"]),
        ),
        "invalid_media_url",
        Some("audio_urls"),
    );
}

#[test]
fn invalid_callback_url_rejected() {
    for bad in [
        "javascript:alert(1)",
        "ftp://e.com/hook",
        "hooks.e.com",
        "https://",
    ] {
        rejected(
            with(t2v("seedance-2.0"), "callback_url", bad),
            "invalid_callback_url",
            Some("callback_url"),
        );
    }
    rejected(
        with(
            t2v("seedance-2.0"),
            "callback_url",
            data_uri("image/png", &png(640, 360)),
        ),
        "invalid_callback_url",
        Some("callback_url"),
    );
    accepted(with(
        t2v("seedance-2.0"),
        "callback_url",
        "http://localhost:9000/hook",
    ));
}

// ---------------------------------------------------------------------------------------
// 6. Limits: resolution

#[test]
fn fast_model_rejects_1080p() {
    let err = rejected(
        with(t2v("seedance-2.0-fast"), "resolution", "1080p"),
        "unsupported_resolution",
        Some("resolution"),
    );
    assert_eq!(err.extra["allowed_resolutions"], json!(["480p", "720p"]));
    assert!(err.message.contains("480p, 720p"), "{}", err.message);
}

#[test]
fn fast_model_rejects_4k() {
    rejected(
        with(t2v("seedance-2.0-fast"), "resolution", "4k"),
        "unsupported_resolution",
        Some("resolution"),
    );
}

#[test]
fn mini_rejects_4k() {
    let err = rejected(
        with(t2v("seedance-2.0-mini"), "resolution", "4k"),
        "unsupported_resolution",
        Some("resolution"),
    );
    assert_eq!(err.extra["allowed_resolutions"], json!(["480p", "720p"]));
}

#[test]
fn mini_rejects_1080p() {
    rejected(
        with(t2v("seedance-2.0-mini"), "resolution", "1080p"),
        "unsupported_resolution",
        Some("resolution"),
    );
}

#[test]
fn seedance_2_accepts_every_resolution() {
    for r in Resolution::ALL {
        assert_eq!(
            accepted(with(t2v("seedance-2.0"), "resolution", r.as_str())).resolution,
            r
        );
    }
}

#[test]
fn unknown_resolution_rejected() {
    for bad in ["8k", "720P", "720", "1280x720", ""] {
        let err = rejected(
            with(t2v("seedance-2.0"), "resolution", bad),
            "unsupported_resolution",
            Some("resolution"),
        );
        assert_eq!(
            err.extra["allowed_resolutions"],
            json!(["480p", "720p", "1080p", "4k"])
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. Limits: duration, aspect ratio, seed

#[test]
fn duration_3_and_16_rejected() {
    for d in [3, 16] {
        let err = rejected(
            with(t2v("seedance-2.0"), "duration", d),
            "invalid_duration",
            Some("duration"),
        );
        assert_eq!(err.extra["min"], 4);
        assert_eq!(err.extra["max"], 15);
    }
    rejected(
        with(t2v("seedance-2.0"), "seconds", 16),
        "invalid_duration",
        Some("seconds"),
    );
    for d in [4, 15] {
        assert_eq!(
            accepted(with(t2v("seedance-2.0"), "duration", d)).duration,
            DurationRequest::Seconds(d)
        );
    }
}

#[test]
fn duration_zero_negative_and_huge_rejected() {
    for d in [
        json!(0),
        json!(-2),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(4_294_967_301_u64),
    ] {
        rejected(
            with(t2v("seedance-2.0"), "duration", d),
            "invalid_duration",
            Some("duration"),
        );
    }
}

#[test]
fn duration_minus_one_lets_the_model_decide() {
    assert_eq!(
        accepted(with(t2v("seedance-2.0"), "duration", -1)).duration,
        DurationRequest::ModelDecides
    );
    assert_eq!(
        accepted(with(t2v("seedance-2.0"), "seconds", -1)).duration,
        DurationRequest::ModelDecides
    );
}

#[test]
fn invalid_aspect_ratio_rejected() {
    for bad in ["2:1", "16x9", "16:09", "ADAPTIVE", ""] {
        let err = rejected(
            with(t2v("seedance-2.0"), "aspect_ratio", bad),
            "invalid_aspect_ratio",
            Some("aspect_ratio"),
        );
        assert_eq!(
            err.extra["allowed_aspect_ratios"].as_array().unwrap().len(),
            7
        );
    }
    rejected(
        with(t2v("seedance-2.0"), "ratio", "5:4"),
        "invalid_aspect_ratio",
        Some("ratio"),
    );
}

#[test]
fn ratio_the_model_lacks_rejected() {
    let catalog = catalog_with(
        "seedance-2.0-fast",
        "\"9:16\", \"21:9\", \"adaptive\"]",
        "\"9:16\", \"adaptive\"]",
    );
    let body = with(
        with(t2v("seedance-2.0-fast"), "aspect_ratio", "21:9"),
        "model",
        "seedance-2.0-fast",
    );
    let err = parse_job(&catalog, body.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param.as_deref()),
        ("invalid_aspect_ratio", Some("aspect_ratio"))
    );
}

#[test]
fn every_fixed_ratio_is_accepted() {
    for a in AspectRatio::FIXED {
        assert_eq!(
            accepted(with(t2v("seedance-2.0"), "aspect_ratio", a.as_str())).aspect_ratio,
            a
        );
    }
}

#[test]
fn adaptive_on_text_to_video_is_accepted() {
    // The model picks the shape from the prompt; the platform documents this as the default.
    for key in ["aspect_ratio", "ratio"] {
        assert_eq!(
            accepted(with(t2v("seedance-2.0"), key, "adaptive")).aspect_ratio,
            AspectRatio::Adaptive
        );
    }
}

#[test]
fn adaptive_is_accepted_for_every_operation() {
    for op in Operation::ALL {
        assert_eq!(
            accepted(with(minimal(op), "aspect_ratio", "adaptive")).aspect_ratio,
            AspectRatio::Adaptive
        );
    }
}

#[test]
fn seed_out_of_range_rejected() {
    for bad in [
        json!(-2),
        json!(4_294_967_296_i64),
        json!(i64::MIN),
        json!(u64::MAX),
    ] {
        let err = rejected(
            with(t2v("seedance-2.0"), "seed", bad),
            "invalid_seed",
            Some("seed"),
        );
        assert_eq!(err.extra["max"], 4_294_967_295_i64);
    }
}

#[test]
fn seed_range_bounds_accepted() {
    for seed in [-1_i64, 0, 42, 4_294_967_295] {
        assert_eq!(
            accepted(with(t2v("seedance-2.0"), "seed", seed)).seed,
            Some(seed)
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. Limits: reference counts

#[test]
fn ten_reference_images_rejected() {
    let err = rejected(
        r2v("reference_images", urls(IMG, 10)),
        "too_many_references",
        Some("reference_images"),
    );
    assert_eq!(err.extra["limit"], 9);
    assert_eq!(
        accepted(r2v("reference_images", urls(IMG, 9)))
            .inputs
            .reference_images
            .len(),
        9
    );
}

#[test]
fn four_reference_videos_rejected() {
    let err = rejected(
        r2v("video_urls", urls(VID, 4)),
        "too_many_references",
        Some("video_urls"),
    );
    assert_eq!(err.extra["limit"], 3);
    accepted(r2v("video_urls", urls(VID, 3)));
}

#[test]
fn four_reference_audios_rejected() {
    let err = rejected(
        r2v("audio_urls", urls(AUD, 4)),
        "too_many_references",
        Some("audio_urls"),
    );
    assert_eq!(err.extra["limit"], 3);
    accepted(r2v("audio_urls", urls(AUD, 3)));
}

#[test]
fn reference_limits_come_from_the_catalog() {
    let catalog = catalog_with(
        "seedance-2.0-mini",
        "{ images = 9, videos = 3, audios = 3 }",
        "{ images = 2, videos = 1, audios = 0 }",
    );
    let body = |key: &str, n: usize, base: &str| {
        let mini = with(
            minimal(Operation::ReferenceToVideo),
            "model",
            "seedance-2.0-mini",
        );
        with(mini, key, urls(base, n)).to_string()
    };
    let check = |body: String, field: &str, limit: u64| {
        let err = parse_job(&catalog, body.as_bytes()).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.param.as_deref()),
            ("too_many_references", Some(field))
        );
        assert_eq!(err.extra["limit"], limit);
    };
    check(body("reference_images", 3, IMG), "reference_images", 2);
    check(body("video_urls", 2, VID), "video_urls", 1);
    check(body("audio_urls", 1, AUD), "audio_urls", 0);
    // The other models keep 9/3/3.
    let nine = r2v("reference_images", urls(IMG, 9)).to_string();
    assert!(parse_job(&catalog, nine.as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------------------
// 6. Limits: data: URI content

#[test]
fn data_uri_images_of_each_type_accepted() {
    for (mime, bytes) in [
        ("image/png", png(640, 360)),
        ("image/jpeg", jpeg(640, 360)),
        ("image/jpg", jpeg(640, 360)),
        ("image/webp", webp(640, 360)),
        ("IMAGE/PNG", png(640, 360)),
    ] {
        let job = accepted(i2v(data_uri(mime, &bytes)));
        let image = job.inputs.image.unwrap();
        assert!(image.is_data_uri());
        assert_eq!(image.data_bytes().unwrap(), bytes);
    }
}

#[test]
fn data_uri_with_parameters_or_without_padding_accepted() {
    let uri = data_uri("image/png", &png(640, 360)).replacen(";base64", ";name=a.png;base64", 1);
    accepted(i2v(uri));
    let mut odd = png(640, 360);
    odd.push(0);
    let padded = data_uri("image/png", &odd);
    assert!(padded.ends_with('='));
    accepted(i2v(padded.trim_end_matches('=')));
}

#[test]
fn data_uri_image_of_unsupported_type_rejected() {
    for mime in [
        "image/gif",
        "image/svg+xml",
        "image/heic",
        "application/octet-stream",
        "video/mp4",
    ] {
        let err = rejected(
            i2v(data_uri(mime, &png(640, 360))),
            "unsupported_media_type",
            Some("image_url"),
        );
        assert_eq!(err.extra["allowed_media_types"][0], "image/jpeg");
    }
}

#[test]
fn data_uri_content_must_match_the_declared_type() {
    // A JPEG declared as PNG, a PNG declared as WebP, a GIF declared as PNG, an empty payload.
    rejected(
        i2v(data_uri("image/png", &jpeg(640, 360))),
        "unsupported_media_type",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/webp", &png(640, 360))),
        "unsupported_media_type",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/png", b"GIF89a-not-really-a-png")),
        "unsupported_media_type",
        Some("image_url"),
    );
    rejected(
        i2v("data:image/png;base64,"),
        "unsupported_media_type",
        Some("image_url"),
    );
}

#[test]
fn data_uri_image_with_truncated_header_rejected() {
    rejected(
        i2v(data_uri("image/png", b"\x89PNG\r\n\x1a\n\0\0")),
        "unsupported_media_type",
        Some("image_url"),
    );
}

#[test]
fn data_uri_image_over_10_mb_rejected() {
    let mut big = png(640, 360);
    big.resize(10 * 1024 * 1024 + 1, 0);
    let err = rejected(
        i2v(data_uri("image/png", &big)),
        "media_too_large",
        Some("image_url"),
    );
    assert_eq!(err.extra["limit_bytes"], 10 * 1024 * 1024);
    big.truncate(10 * 1024 * 1024);
    accepted(i2v(data_uri("image/png", &big)));
}

#[test]
fn data_uri_video_over_50_mb_rejected() {
    let mut big = mp4();
    big.resize(50 * 1024 * 1024 + 3, 0);
    let body = with(
        minimal(Operation::VideoToVideo),
        "video_url",
        data_uri("video/mp4", &big),
    );
    rejected(body, "media_too_large", Some("video_url"));
}

#[test]
fn data_uri_audio_over_15_mb_rejected() {
    let mut big = wav();
    big.resize(15 * 1024 * 1024 + 1, 0);
    rejected(
        r2v("audio_urls", json!([data_uri("audio/wav", &big)])),
        "media_too_large",
        Some("audio_urls"),
    );
}

#[test]
fn oversized_payload_is_refused_before_decoding() {
    // Not valid base64 at all, but far too long: the size answers first.
    let uri = format!("data:image/png;base64,{}", "@".repeat(15 * 1024 * 1024));
    rejected(i2v(uri), "media_too_large", Some("image_url"));
}

#[test]
fn data_uri_image_sides_outside_300_to_6000_rejected() {
    for (w, h) in [(299, 400), (400, 299), (6001, 3000), (3000, 6001)] {
        let err = rejected(
            i2v(data_uri("image/png", &png(w, h))),
            "invalid_image_dimensions",
            Some("image_url"),
        );
        assert_eq!(
            (err.extra["width"].clone(), err.extra["height"].clone()),
            (json!(w), json!(h))
        );
    }
    accepted(i2v(data_uri("image/png", &png(300, 300))));
    accepted(i2v(data_uri("image/png", &png(6000, 6000))));
}

#[test]
fn data_uri_image_aspect_outside_0_4_to_2_5_rejected() {
    rejected(
        i2v(data_uri("image/png", &png(1300, 500))),
        "invalid_image_dimensions",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/png", &png(399, 1000))),
        "invalid_image_dimensions",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/jpeg", &jpeg(2000, 300))),
        "invalid_image_dimensions",
        Some("image_url"),
    );
    // The bounds themselves are in.
    accepted(i2v(data_uri("image/png", &png(1250, 500))));
    accepted(i2v(data_uri("image/png", &png(400, 1000))));
}

#[test]
fn dimension_rules_apply_to_every_image_slot() {
    let small = data_uri("image/png", &png(100, 100));
    rejected(
        json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "x", "start_image": IMG, "end_image": small}),
        "invalid_image_dimensions",
        Some("end_image"),
    );
    rejected(
        r2v("reference_images", json!([IMG, small])),
        "invalid_image_dimensions",
        Some("reference_images"),
    );
}

#[test]
fn data_uri_videos_of_each_type_accepted() {
    let mut mov = vec![0, 0, 0, 8];
    mov.extend_from_slice(b"wide");
    mov.resize(32, 0);
    for (mime, bytes) in [
        ("video/mp4", mp4()),
        ("video/quicktime", mov),
        ("video/quicktime", mp4()),
    ] {
        let job = accepted(with(
            minimal(Operation::VideoToVideo),
            "video_url",
            data_uri(mime, &bytes),
        ));
        assert_eq!(job.inputs.video.unwrap().data_bytes().unwrap(), bytes);
    }
}

#[test]
fn data_uri_video_of_unsupported_type_or_content_rejected() {
    let v2v = |uri: String| with(minimal(Operation::VideoToVideo), "video_url", uri);
    rejected(
        v2v(data_uri("video/webm", &mp4())),
        "unsupported_media_type",
        Some("video_url"),
    );
    rejected(
        v2v(data_uri("video/mp4", b"not a video at all")),
        "unsupported_media_type",
        Some("video_url"),
    );
    rejected(
        v2v(data_uri("video/mp4", &png(640, 360))),
        "unsupported_media_type",
        Some("video_url"),
    );
    rejected(
        r2v("video_urls", json!([data_uri("image/png", &png(640, 360))])),
        "unsupported_media_type",
        Some("video_urls"),
    );
}

#[test]
fn data_uri_audios_of_each_type_accepted() {
    let mp3_id3 = b"ID3\x04\0\0\0\0\0\0".to_vec();
    let mp3_frame = vec![0xFF, 0xFB, 0x90, 0x64, 0, 0];
    let adts = vec![0xFF, 0xF1, 0x50, 0x80, 0, 0x1F, 0xFC];
    let mut m4a = vec![0, 0, 0, 20];
    m4a.extend_from_slice(b"ftypM4A ");
    m4a.resize(32, 0);
    for (mime, bytes) in [
        ("audio/wav", wav()),
        ("audio/x-wav", wav()),
        ("audio/mpeg", mp3_id3.clone()),
        ("audio/mpeg", mp3_frame),
        ("audio/mp3", mp3_id3),
        ("audio/aac", adts),
        ("audio/aac", m4a.clone()),
        ("audio/mp4", m4a.clone()),
        ("audio/m4a", m4a.clone()),
        ("audio/x-m4a", m4a),
    ] {
        let job = accepted(r2v("audio_urls", json!([data_uri(mime, &bytes)])));
        assert_eq!(
            job.inputs.reference_audios[0].data_bytes().unwrap(),
            bytes,
            "{mime}"
        );
    }
}

#[test]
fn data_uri_audio_of_unsupported_type_or_content_rejected() {
    rejected(
        r2v("audio_urls", json!([data_uri("audio/ogg", &wav())])),
        "unsupported_media_type",
        Some("audio_urls"),
    );
    rejected(
        r2v("audio_urls", json!([data_uri("audio/flac", &wav())])),
        "unsupported_media_type",
        Some("audio_urls"),
    );
    // ADTS (layer 0) is AAC, not MP3; a WAV is not an MP3.
    rejected(
        r2v(
            "audio_urls",
            json!([data_uri("audio/mpeg", &[0xFF, 0xF1, 0x50, 0x80])]),
        ),
        "unsupported_media_type",
        Some("audio_urls"),
    );
    rejected(
        r2v("audio_urls", json!([data_uri("audio/mpeg", &wav())])),
        "unsupported_media_type",
        Some("audio_urls"),
    );
}

#[test]
fn data_uris_for_references_are_checked_like_the_others() {
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x",
        "reference_images": [data_uri("image/webp", &webp(800, 800))],
        "video_urls": [data_uri("video/mp4", &mp4())], "audio_urls": [data_uri("audio/wav", &wav())]});
    let job = accepted(body);
    assert_eq!(job.inputs.reference_videos[0].data_bytes().unwrap(), mp4());
}

// ---------------------------------------------------------------------------------------
// 4. Operation inferred when omitted

/// A body of `model`, a prompt and `inputs`, without `operation`.
fn implicit(inputs: Value) -> Value {
    let mut body = json!({"model": "seedance-2.0", "prompt": "a cat"});
    for (key, value) in inputs.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[test]
fn operation_omitted_with_only_a_prompt_is_text_to_video() {
    assert_eq!(
        accepted(implicit(json!({}))).operation,
        Operation::TextToVideo
    );
    // `null` is not sent, like every other field.
    assert_eq!(
        accepted(implicit(json!({"operation": null}))).operation,
        Operation::TextToVideo
    );
}

#[test]
fn operation_omitted_with_image_url_or_image_is_image_to_video() {
    for key in ["image_url", "image"] {
        let job = accepted(implicit(json!({key: IMG})));
        assert_eq!(job.operation, Operation::ImageToVideo);
        assert_eq!(job.inputs.image.unwrap().as_str(), IMG);
    }
}

#[test]
fn operation_omitted_with_start_and_end_image_is_start_end_to_video() {
    let job = accepted(implicit(json!({"start_image": IMG, "end_image": IMG})));
    assert_eq!(job.operation, Operation::StartEndToVideo);
    // One frame alone still asks for start-end-to-video, which then needs the other.
    rejected(
        implicit(json!({"start_image": IMG})),
        "missing_field",
        Some("end_image"),
    );
    rejected(
        implicit(json!({"end_image": IMG})),
        "missing_field",
        Some("start_image"),
    );
}

#[test]
fn operation_omitted_with_references_is_reference_to_video() {
    for inputs in [
        json!({"reference_images": [IMG]}),
        json!({"image_urls": [IMG, IMG]}),
        json!({"video_urls": [VID]}),
        json!({"reference_images": [IMG], "video_urls": [VID], "audio_urls": [AUD]}),
        json!({"image_urls": [IMG], "audio_urls": [AUD]}),
    ] {
        let job = accepted(implicit(inputs.clone()));
        assert_eq!(job.operation, Operation::ReferenceToVideo, "{inputs}");
    }
    // Audio alone asks for reference-to-video, which needs a visual reference beside it.
    rejected(
        implicit(json!({"audio_urls": [AUD]})),
        "audio_requires_visual_reference",
        Some("audio_urls"),
    );
}

#[test]
fn operation_omitted_with_video_url_or_video_is_video_to_video() {
    for key in ["video_url", "video"] {
        let job = accepted(implicit(json!({key: VID})));
        assert_eq!(job.operation, Operation::VideoToVideo);
        assert_eq!(job.inputs.video.unwrap().as_str(), VID);
    }
}

#[test]
fn operation_omitted_with_task_id_is_video_extension() {
    let job = accepted(json!({"model": "seedance-2.0", "task_id": TASK}));
    assert_eq!(job.operation, Operation::VideoExtension);
    assert_eq!(job.inputs.source_task_id.as_deref(), Some(TASK));
    assert_eq!(job.prompt, None);
}

#[test]
fn operation_omitted_ignores_null_and_empty_inputs() {
    let job = accepted(implicit(json!({"image_url": null, "reference_images": [],
        "image_urls": [], "video_urls": null, "task_id": null})));
    assert_eq!(job.operation, Operation::TextToVideo);
    let job = accepted(implicit(json!({"image_url": IMG, "reference_images": []})));
    assert_eq!(job.operation, Operation::ImageToVideo);
}

#[test]
fn operation_omitted_with_inputs_of_two_operations_is_ambiguous() {
    for (inputs, first, second) in [
        (
            json!({"image_url": IMG, "video_url": VID}),
            "image_url",
            "video_url",
        ),
        (json!({"image": IMG, "video": VID}), "image", "video"),
        (
            json!({"start_image": IMG, "end_image": IMG, "reference_images": [IMG]}),
            "start_image",
            "reference_images",
        ),
        (
            json!({"image_url": IMG, "end_image": IMG}),
            "image_url",
            "end_image",
        ),
        (
            json!({"image_url": IMG, "image_urls": [IMG]}),
            "image_url",
            "image_urls",
        ),
        (
            json!({"video_urls": [VID], "video_url": VID}),
            "video_urls",
            "video_url",
        ),
        (
            json!({"video_url": VID, "task_id": TASK}),
            "video_url",
            "task_id",
        ),
        (
            json!({"audio_urls": [AUD], "image_url": IMG}),
            "image_url",
            "audio_urls",
        ),
    ] {
        let err = rejected(
            implicit(inputs.clone()),
            "ambiguous_operation",
            Some(second),
        );
        for field in [first, second] {
            assert!(
                err.message.contains(&format!("`{field}`")),
                "{inputs}: {}",
                err.message
            );
        }
        assert!(err.message.contains("`operation`"), "{}", err.message);
    }
}

#[test]
fn explicit_operation_keeps_the_strict_rules() {
    // Inference never overrides what was sent: the inputs must fit the operation named.
    rejected(
        with(t2v("seedance-2.0"), "image_url", IMG),
        "input_not_allowed",
        Some("image_url"),
    );
    rejected(
        with(minimal(Operation::ImageToVideo), "video_url", VID),
        "input_not_allowed",
        Some("video_url"),
    );
    let job = accepted(with(minimal(Operation::VideoExtension), "prompt", "more"));
    assert_eq!(job.operation, Operation::VideoExtension);
}

#[test]
fn inferred_operation_the_model_lacks_is_unsupported_operation() {
    let catalog = catalog_with(
        "seedance-2.0-mini",
        "\"start-end-to-video\", \"reference-to-video\", \"video-to-video\", \"video-extension\"]",
        "\"start-end-to-video\"]",
    );
    let body = with(
        implicit(json!({"video_url": VID})),
        "model",
        "seedance-2.0-mini",
    );
    let err = parse_job(&catalog, body.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param.as_deref()),
        ("unsupported_operation", Some("operation"))
    );
    assert!(err.message.contains("video-to-video"), "{}", err.message);
}

#[test]
fn operations_of_other_families_are_unsupported_operation() {
    for op in ["audio-to-video", "motion-control"] {
        let err = rejected(
            with(t2v("seedance-2.0"), "operation", op),
            "unsupported_operation",
            Some("operation"),
        );
        assert!(
            err.message.contains("other model families"),
            "{}",
            err.message
        );
    }
}

// ---------------------------------------------------------------------------------------
// The platform's optional settings

#[test]
fn return_last_frame_is_carried() {
    assert!(accepted(with(t2v("seedance-2.0"), "return_last_frame", true)).return_last_frame);
    assert!(!accepted(with(t2v("seedance-2.0"), "return_last_frame", false)).return_last_frame);
}

#[test]
fn service_tier_default_is_accepted() {
    let job = accepted(with(t2v("seedance-2.0"), "service_tier", "default"));
    assert_eq!(job.service_tier, Some(ServiceTier::Default));
}

#[test]
fn service_tier_flex_is_refused() {
    let err = rejected(
        with(t2v("seedance-2.0"), "service_tier", "flex"),
        "unsupported_service_tier",
        Some("service_tier"),
    );
    assert!(err.message.contains("flex"), "{}", err.message);
    assert_eq!(err.extra["allowed_service_tiers"], json!(["default"]));
}

#[test]
fn unknown_service_tier_is_refused() {
    for tier in ["Default", "priority", ""] {
        rejected(
            with(t2v("seedance-2.0"), "service_tier", tier),
            "unsupported_service_tier",
            Some("service_tier"),
        );
    }
}

#[test]
fn execution_expires_after_outside_3600_to_259200_is_refused() {
    for bad in [
        json!(3599),
        json!(259_201),
        json!(0),
        json!(-1),
        json!(u64::MAX),
    ] {
        let err = rejected(
            with(t2v("seedance-2.0"), "execution_expires_after", bad),
            "invalid_execution_expires_after",
            Some("execution_expires_after"),
        );
        assert_eq!(
            (&err.extra["min"], &err.extra["max"]),
            (&json!(3600), &json!(259_200))
        );
    }
    for good in [3600, 172_800, 259_200] {
        let job = accepted(with(t2v("seedance-2.0"), "execution_expires_after", good));
        assert_eq!(job.execution_expires_after, Some(good));
    }
}

#[test]
fn priority_outside_0_to_9_is_refused() {
    for bad in [json!(10), json!(-1), json!(256), json!(i64::MIN)] {
        let err = rejected(
            with(t2v("seedance-2.0"), "priority", bad),
            "invalid_priority",
            Some("priority"),
        );
        assert_eq!(
            (&err.extra["min"], &err.extra["max"]),
            (&json!(0), &json!(9))
        );
    }
    for good in [0, 9] {
        assert_eq!(
            accepted(with(t2v("seedance-2.0"), "priority", good)).priority,
            Some(good)
        );
    }
}

#[test]
fn safety_identifier_over_64_characters_is_refused() {
    let err = rejected(
        with(t2v("seedance-2.0"), "safety_identifier", "a".repeat(65)),
        "invalid_safety_identifier",
        Some("safety_identifier"),
    );
    assert_eq!(err.extra["max_length"], 64);
    for bad in ["", "a\u{0}b", "line\nbreak"] {
        rejected(
            with(t2v("seedance-2.0"), "safety_identifier", bad),
            "invalid_safety_identifier",
            Some("safety_identifier"),
        );
    }
    // Characters, not bytes.
    let id = "身".repeat(64);
    let job = accepted(with(t2v("seedance-2.0"), "safety_identifier", id.as_str()));
    assert_eq!(job.safety_identifier, Some(id));
}

#[test]
fn user_stands_in_for_a_missing_safety_identifier() {
    let job = accepted(with(t2v("seedance-2.0"), "user", "end-user-7"));
    assert_eq!(job.safety_identifier.as_deref(), Some("end-user-7"));
    // Standing in, it is held to the same rules.
    let err = rejected(
        with(t2v("seedance-2.0"), "user", "u".repeat(65)),
        "invalid_safety_identifier",
        Some("user"),
    );
    assert!(err.message.contains("stands in"), "{}", err.message);
    // Beside a safety identifier, `user` is not kept, so nothing holds it to those rules.
    let body = with(
        with(t2v("seedance-2.0"), "user", "u".repeat(200)),
        "safety_identifier",
        "sid",
    );
    assert_eq!(accepted(body).safety_identifier.as_deref(), Some("sid"));
}

#[test]
fn image_urls_is_an_alias_of_reference_images() {
    let body = implicit(json!({"operation": "reference-to-video", "image_urls": [IMG]}));
    let job = accepted(body);
    assert_eq!(job.inputs.reference_images[0].as_str(), IMG);
    // Errors name the field as sent.
    let err = rejected(
        implicit(json!({"image_urls": urls(IMG, 10)})),
        "too_many_references",
        Some("image_urls"),
    );
    assert_eq!(err.extra["limit"], 9);
    rejected(
        implicit(json!({"image_urls": [IMG, "ftp://e.com/b.png"]})),
        "invalid_media_url",
        Some("image_urls"),
    );
    rejected(
        with(minimal(Operation::ImageToVideo), "image_urls", json!([IMG])),
        "input_not_allowed",
        Some("image_urls"),
    );
    rejected(
        with(
            minimal(Operation::ImageToVideo),
            "image_urls",
            json!([data_uri("image/gif", b"GIF89a")]),
        ),
        "input_not_allowed",
        Some("image_urls"),
    );
}

#[test]
fn image_urls_and_reference_images_must_agree() {
    let job = accepted(r2v("image_urls", json!([IMG])));
    assert_eq!(job.inputs.reference_images.len(), 1);
    rejected(
        r2v("image_urls", json!(["https://e.com/other.png"])),
        "alias_conflict",
        Some("image_urls"),
    );
    rejected(
        r2v("image_urls", json!([IMG, IMG])),
        "alias_conflict",
        Some("image_urls"),
    );
    // An empty list is not sent, so it cannot disagree.
    accepted(r2v("image_urls", json!([])));
}

#[test]
fn audio_toggle_aliases_must_all_agree() {
    assert!(!accepted(with(t2v("seedance-2.0"), "outputAudio", false)).generate_audio);
    let all_false = json!({"generate_audio": false, "output_audio": false, "outputAudio": false});
    assert!(!accepted(implicit(all_false)).generate_audio);
    for (inputs, param) in [
        (
            json!({"output_audio": true, "outputAudio": false}),
            "outputAudio",
        ),
        (
            json!({"generate_audio": true, "outputAudio": false}),
            "outputAudio",
        ),
        (
            json!({"generate_audio": false, "output_audio": false, "outputAudio": true}),
            "outputAudio",
        ),
        (
            json!({"generate_audio": true, "output_audio": false, "outputAudio": false}),
            "output_audio",
        ),
    ] {
        rejected(implicit(inputs), "alias_conflict", Some(param));
    }
}

#[test]
fn draft_and_camera_fixed_false_are_no_ops_and_true_is_unsupported() {
    let job = accepted(with(
        with(t2v("seedance-2.0"), "draft", false),
        "camera_fixed",
        false,
    ));
    assert_eq!(job, accepted(t2v("seedance-2.0")));
    for (field, says) in [
        ("draft", "`seedance-2.0`"),
        ("camera_fixed", "Seedance 2.0"),
    ] {
        let err = rejected(
            with(t2v("seedance-2.0"), field, true),
            "unsupported_parameter",
            Some(field),
        );
        assert!(err.message.contains(says), "{}", err.message);
    }
}

#[test]
fn jobs_stored_before_the_platform_settings_still_load() {
    let mut stored = serde_json::to_value(accepted(minimal(Operation::ImageToVideo))).unwrap();
    let fields = stored.as_object_mut().unwrap();
    for key in [
        "return_last_frame",
        "service_tier",
        "execution_expires_after",
        "priority",
        "safety_identifier",
    ] {
        assert!(fields.remove(key).is_some(), "{key}");
    }
    let job: VideoJob = serde_json::from_value(stored).unwrap();
    assert_eq!(job, accepted(minimal(Operation::ImageToVideo)));
}

// ---------------------------------------------------------------------------------------
// asset:// material references

const ASSET: &str = "asset://asset-20260720123456-ab1cd";

#[test]
fn asset_references_are_accepted_in_every_image_field() {
    let job = accepted(i2v(ASSET));
    assert_eq!(job.inputs.image.as_ref().unwrap().as_str(), ASSET);
    assert_eq!(
        job.inputs.image.unwrap().asset_id(),
        Some("asset-20260720123456-ab1cd")
    );
    let job = accepted(implicit(json!({"image": ASSET})));
    assert_eq!(job.inputs.image.unwrap().as_str(), ASSET);
    let job = accepted(implicit(json!({"start_image": ASSET, "end_image": ASSET})));
    assert_eq!(job.inputs.start_image.unwrap().as_str(), ASSET);
    assert_eq!(job.inputs.end_image.unwrap().as_str(), ASSET);
    for key in ["reference_images", "image_urls"] {
        let job = accepted(implicit(json!({key: [ASSET, IMG]})));
        assert_eq!(job.inputs.reference_images[0].as_str(), ASSET);
    }
    // The scheme is case-insensitive and stored in lower case, like the others.
    let job = accepted(i2v("ASSET://asset-20260720123456-ab1cd"));
    assert_eq!(job.inputs.image.unwrap().as_str(), ASSET);
}

#[test]
fn malformed_asset_references_rejected() {
    for bad in [
        "asset://asset-2026072012345-ab1cd",
        "asset://asset-202607201234567-ab1cd",
        "asset://asset-20260720123456-AB1CD",
        "asset://asset-20260720123456-ab1c",
        "asset://asset-20260720123456-ab1cde",
        "asset://asset-20260720123456_ab1cd",
        "asset://20260720123456-ab1cd",
        "asset://asset-2026072012345x-ab1cd",
        "asset://asset-20260720123456-ab1cd/x",
        "asset:asset-20260720123456-ab1cd",
        "asset://",
        "asset-20260720123456-ab1cd",
    ] {
        rejected(i2v(bad), "invalid_media_url", Some("image_url"));
    }
}

#[test]
fn material_asset_ids_are_reference_images() {
    let job = accepted(implicit(
        json!({"material_asset_id": "asset-20260720123456-ab1cd"}),
    ));
    assert_eq!(job.operation, Operation::ReferenceToVideo);
    assert_eq!(job.inputs.reference_images[0].as_str(), ASSET);
    let job = accepted(implicit(json!({"reference_images": [IMG],
        "material_asset_ids": ["asset-20260720123456-ab1cd", "asset-20260720123456-zz9zz"]})));
    let refs: Vec<&str> = job
        .inputs
        .reference_images
        .iter()
        .map(|r| r.as_str())
        .collect();
    assert_eq!(refs, [IMG, ASSET, "asset://asset-20260720123456-zz9zz"]);
    // Aliases sent together keep agreeing.
    let job = accepted(implicit(
        json!({"reference_images": [IMG], "image_urls": [IMG],
        "material_asset_id": "asset-20260720123456-ab1cd"}),
    ));
    assert_eq!(job.inputs.reference_images.len(), 2);
    for (body, code, param) in [
        (
            json!({"material_asset_id": "asset-1"}),
            "invalid_material_asset_id",
            "material_asset_id",
        ),
        (
            json!({"material_asset_ids": ["asset-20260720123456-AB1CD"]}),
            "invalid_material_asset_id",
            "material_asset_ids",
        ),
        (
            json!({"material_asset_ids": []}),
            "invalid_type",
            "material_asset_ids",
        ),
        (
            json!({"material_asset_id": 5}),
            "invalid_type",
            "material_asset_id",
        ),
    ] {
        rejected(implicit(body), code, Some(param));
    }
}

#[test]
fn asset_references_are_refused_for_video_and_audio() {
    rejected(
        implicit(json!({"video_url": ASSET})),
        "invalid_media_url",
        Some("video_url"),
    );
    rejected(
        r2v("video_urls", json!([ASSET])),
        "invalid_media_url",
        Some("video_urls"),
    );
    let err = rejected(
        r2v("audio_urls", json!([ASSET])),
        "invalid_media_url",
        Some("audio_urls"),
    );
    assert!(err.message.contains("images only"), "{}", err.message);
    rejected(
        with(t2v("seedance-2.0"), "callback_url", ASSET),
        "invalid_callback_url",
        Some("callback_url"),
    );
}

// ---------------------------------------------------------------------------------------
// Fields of other model families

/// A plausible value of each documented field Seedance models do not take.
fn unsupported_value(field: &str) -> Value {
    match field {
        "kling_elements" => json!([{"name": "hero", "element_input_urls": [IMG, IMG]}]),
        "negative_prompt" | "extend_times" | "size" | "effect_type" => {
            json!("x")
        }
        "reference_image_type" | "referenceImageType" => json!("style"),
        "audio_url" => json!(AUD),
        "cfg_scale" | "motion_strength" => json!(0.5),
        _ => json!(24),
    }
}

#[test]
fn fields_of_other_model_families_are_unsupported_parameter() {
    for field in [
        "kling_elements",
        "cfg_scale",
        "motion_strength",
        "negative_prompt",
        "fps",
    ] {
        assert!(
            UNSUPPORTED_FIELDS.iter().any(|(f, _)| *f == field),
            "{field}"
        );
    }
    for (field, _) in UNSUPPORTED_FIELDS {
        for model in ["seedance-2.0", "seedance-2.0-fast", "seedance-2.0-mini"] {
            let err = rejected(
                with(t2v(model), field, unsupported_value(field)),
                "unsupported_parameter",
                Some(field),
            );
            assert!(
                err.message.starts_with(&format!("`{field}` ")),
                "{}",
                err.message
            );
        }
    }
    let err = rejected(
        with(t2v("seedance-2.0"), "cfg_scale", 7),
        "unsupported_parameter",
        Some("cfg_scale"),
    );
    assert!(
        err.message.contains("another model family")
            && err.message.contains("not supported by Seedance models"),
        "{}",
        err.message
    );
}

#[test]
fn unsupported_fields_sent_as_null_count_as_not_sent() {
    let mut body = t2v("seedance-2.0");
    for (field, _) in UNSUPPORTED_FIELDS {
        body[field] = Value::Null;
    }
    assert_eq!(accepted(body), accepted(t2v("seedance-2.0")));
}

#[test]
fn unsupported_parameter_even_of_the_wrong_type() {
    // Its type is another family's business; what matters is that Seedance cannot use it.
    rejected(
        with(t2v("seedance-2.0"), "fps", "thirty"),
        "unsupported_parameter",
        Some("fps"),
    );
}

// ---------------------------------------------------------------------------------------
// Duration against the platform's bounds

#[test]
fn duration_follows_the_model_range_not_the_platform_wide_bound() {
    // The platform's schema admits -1..=60 across all its models; Seedance's range is the
    // catalog's.
    for (key, d) in [
        ("duration", 60),
        ("seconds", 60),
        ("duration", 0),
        ("duration", 1),
    ] {
        let err = rejected(
            with(t2v("seedance-2.0"), key, d),
            "invalid_duration",
            Some(key),
        );
        assert_eq!(
            (&err.extra["min"], &err.extra["max"]),
            (&json!(4), &json!(15))
        );
    }
    assert_eq!(
        accepted(implicit(json!({"seconds": -1}))).duration,
        DurationRequest::ModelDecides
    );
}

// ---------------------------------------------------------------------------------------
// Validation order

#[test]
fn invalid_json_is_reported_before_anything_else() {
    let err = parse_bytes(br#"{"bogus": 1, "model": "nope""#).unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_json");
}

#[test]
fn duplicate_field_is_reported_before_unknown_field() {
    let err = parse_bytes(br#"{"bogus":1,"model":"a","model":"b"}"#).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param.as_deref()),
        ("invalid_json", Some("model"))
    );
}

#[test]
fn unknown_field_is_reported_before_a_bad_model() {
    rejected(
        json!({"model": "nope", "operation": "text-to-video", "prompt": "x", "bogus": 1}),
        "unknown_field",
        Some("bogus"),
    );
}

#[test]
fn unknown_field_is_reported_before_a_wrong_type() {
    rejected(
        json!({"model": 5, "operation": "text-to-video", "prompt": "x", "bogus": 1}),
        "unknown_field",
        Some("bogus"),
    );
}

#[test]
fn wrong_type_is_reported_before_a_bad_model() {
    rejected(
        json!({"model": "nope", "operation": "text-to-video", "prompt": "x", "watermark": "yes"}),
        "invalid_type",
        Some("watermark"),
    );
}

#[test]
fn alias_conflict_is_reported_before_a_bad_model() {
    rejected(
        json!({"model": "nope", "operation": "text-to-video", "prompt": "x", "duration": 4, "seconds": 5}),
        "alias_conflict",
        Some("seconds"),
    );
}

#[test]
fn bad_model_and_bad_resolution_reports_model_not_found() {
    rejected(
        json!({"model": "nope", "operation": "text-to-video", "prompt": "x", "resolution": "8k"}),
        "model_not_found",
        Some("model"),
    );
}

#[test]
fn bad_model_is_reported_before_a_bad_operation() {
    rejected(
        json!({"model": "nope", "operation": "nope", "prompt": "x"}),
        "model_not_found",
        Some("model"),
    );
}

#[test]
fn bad_model_is_reported_before_an_unsupported_parameter() {
    rejected(
        json!({"model": "kling-v1", "prompt": "x", "cfg_scale": 7}),
        "model_not_found",
        Some("model"),
    );
}

#[test]
fn wrong_type_is_reported_before_an_unsupported_parameter() {
    rejected(
        json!({"model": "seedance-2.0", "prompt": "x", "cfg_scale": 7, "priority": "high"}),
        "invalid_type",
        Some("priority"),
    );
}

#[test]
fn unsupported_parameter_is_reported_before_the_operation() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "nope", "prompt": "x", "fps": 24}),
        "unsupported_parameter",
        Some("fps"),
    );
    rejected(
        json!({"model": "seedance-2.0", "prompt": "x", "fps": 24, "image_url": IMG, "video_url": VID}),
        "unsupported_parameter",
        Some("fps"),
    );
}

#[test]
fn ambiguous_operation_is_reported_before_the_prompt() {
    rejected(
        json!({"model": "seedance-2.0", "image_url": IMG, "video_url": VID}),
        "ambiguous_operation",
        Some("video_url"),
    );
}

#[test]
fn upstream_settings_are_checked_after_the_seed_and_before_reference_counts() {
    let body = json!({"model": "seedance-2.0", "prompt": "x", "seed": -5, "priority": 99});
    rejected(body.clone(), "invalid_seed", Some("seed"));
    let body = with(without(body, "seed"), "image_urls", urls(IMG, 10));
    rejected(body.clone(), "invalid_priority", Some("priority"));
    let body = with(with(body, "priority", 1), "service_tier", "flex");
    rejected(
        body.clone(),
        "unsupported_service_tier",
        Some("service_tier"),
    );
    let body = with(
        with(body, "service_tier", "default"),
        "execution_expires_after",
        1,
    );
    rejected(
        body.clone(),
        "invalid_execution_expires_after",
        Some("execution_expires_after"),
    );
    let body = with(with(body, "execution_expires_after", 3600), "user", "");
    rejected(body.clone(), "invalid_safety_identifier", Some("user"));
    rejected(
        with(body, "user", "u"),
        "too_many_references",
        Some("image_urls"),
    );
}

#[test]
fn bad_operation_is_reported_before_a_bad_input() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "x", "prompt": "x", "audio_urls": [AUD]}),
        "unsupported_operation",
        Some("operation"),
    );
}

#[test]
fn bad_input_is_reported_before_a_bad_resolution() {
    rejected(
        json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "x", "resolution": "4k", "image_url": IMG}),
        "input_not_allowed",
        Some("image_url"),
    );
    rejected(
        json!({"model": "seedance-2.0-fast", "operation": "image-to-video", "prompt": "x", "resolution": "4k", "image_url": "ftp://x"}),
        "invalid_media_url",
        Some("image_url"),
    );
}

#[test]
fn missing_prompt_is_reported_before_a_missing_input() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "image-to-video"}),
        "missing_field",
        Some("prompt"),
    );
}

#[test]
fn bad_resolution_is_reported_before_a_bad_duration() {
    rejected(
        json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "x", "resolution": "4k", "duration": 99}),
        "unsupported_resolution",
        Some("resolution"),
    );
}

#[test]
fn too_many_references_is_reported_before_their_content() {
    let mut images = vec![Value::from(data_uri("image/gif", b"GIF89a"))];
    images.extend((0..9).map(|i| Value::from(format!("{IMG}?{i}"))));
    rejected(
        r2v("reference_images", images.into()),
        "too_many_references",
        Some("reference_images"),
    );
}

#[test]
fn limits_are_reported_before_data_uri_content() {
    let body = with(i2v(data_uri("image/gif", b"GIF89a")), "duration", 3);
    rejected(body, "invalid_duration", Some("duration"));
}

// ---------------------------------------------------------------------------------------
// Errors and persistence

#[test]
fn every_rejection_has_the_platform_shape() {
    let err = parse(with(t2v("seedance-2.0-fast"), "resolution", "1080p")).unwrap_err();
    let body = err.body();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "unsupported_resolution");
    assert_eq!(body["error"]["param"], "resolution");
    assert_eq!(
        body["error"]["allowed_resolutions"],
        json!(["480p", "720p"])
    );
    let err = parse_bytes(b"nope").unwrap_err();
    assert_eq!(err.body()["error"]["param"], Value::Null);
}

#[test]
fn jobs_persist_as_json_and_round_trip() {
    for op in Operation::ALL {
        let job = accepted(with(with(minimal(op), "duration", -1), "seed", 3));
        let stored = serde_json::to_string(&job).unwrap();
        let back: VideoJob = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, job);
    }
    let job = accepted(minimal(Operation::ReferenceToVideo));
    let stored = serde_json::to_value(&job).unwrap();
    assert_eq!(stored["operation"], "reference-to-video");
    assert_eq!(stored["resolution"], "720p");
    assert_eq!(stored["aspect_ratio"], "adaptive");
    assert_eq!(stored["duration"], json!({"seconds": 5}));
    assert_eq!(stored["inputs"]["reference_images"], json!([IMG]));
}

#[test]
fn prompt_commands_are_validated_and_priced_as_fields_and_stripped_from_the_prompt() {
    let job = accepted(with(
        t2v("seedance-2.0"),
        "prompt",
        "a cat --rs 1080p --dur 12 --rt 9:16 --seed 7 --wm true --cf false",
    ));
    assert_eq!(job.prompt.as_deref(), Some("a cat"));
    assert_eq!(job.resolution, Resolution::P1080);
    assert_eq!(job.duration, DurationRequest::Seconds(12));
    assert_eq!(job.aspect_ratio, AspectRatio::W9H16);
    assert_eq!(job.seed, Some(7));
    assert!(job.watermark);
    let plain = accepted(
        json!({"model": "seedance-2.0", "operation": "text-to-video",
        "prompt": "a cat", "resolution": "1080p", "duration": 12, "aspect_ratio": "9:16",
        "seed": 7, "watermark": true}),
    );
    // The same job as the fields sent plainly, so priced and sent upstream the same.
    assert_eq!(
        serde_json::to_value(&job).unwrap(),
        serde_json::to_value(&plain).unwrap()
    );
    // The fast model has no 1080p, whichever way it is asked for.
    let fast = with(t2v("seedance-2.0-fast"), "prompt", "a cat --rs 1080p");
    rejected(fast, "unsupported_resolution", Some("resolution"));
    let conflict = with(
        with(t2v("seedance-2.0"), "prompt", "a cat --rs 1080p"),
        "resolution",
        "720p",
    );
    rejected(conflict, "prompt_command_conflict", Some("prompt"));
    // `--cf true` is the field's `true`, refused on Seedance 2.0 like the field itself.
    let fixed = with(t2v("seedance-2.0"), "prompt", "a cat --cf true");
    rejected(fixed, "unsupported_parameter", Some("camera_fixed"));
}

// ---------------------------------------------------------------------------------------
// Seedance 2.5, and a model that differs only in its catalog entry

fn on_2_5(op: Operation) -> Value {
    with(minimal(op), "model", "seedance-2.5")
}

#[test]
fn seedance_2_5_takes_thirty_seconds_and_thirty_reference_images() {
    let job = accepted(with(
        with(
            on_2_5(Operation::ReferenceToVideo),
            "reference_images",
            urls(IMG, 30),
        ),
        "duration",
        30,
    ));
    assert_eq!(job.duration, DurationRequest::Seconds(30));
    assert_eq!(job.inputs.reference_images.len(), 30);
    accepted(with(
        with(
            on_2_5(Operation::ReferenceToVideo),
            "video_urls",
            urls(VID, 10),
        ),
        "audio_urls",
        urls(AUD, 10),
    ));
    let err = rejected(
        with(
            on_2_5(Operation::ReferenceToVideo),
            "reference_images",
            urls(IMG, 31),
        ),
        "too_many_references",
        Some("reference_images"),
    );
    assert_eq!(err.extra["limit"], 30);
    rejected(
        with(on_2_5(Operation::TextToVideo), "duration", 31),
        "invalid_duration",
        Some("duration"),
    );
    // Seedance 2.0 keeps its own limits.
    rejected(
        with(minimal(Operation::TextToVideo), "duration", 30),
        "invalid_duration",
        Some("duration"),
    );
    accepted(with(on_2_5(Operation::TextToVideo), "resolution", "1080p"));
    rejected(
        with(on_2_5(Operation::TextToVideo), "resolution", "4k"),
        "unsupported_resolution",
        Some("resolution"),
    );
}

#[test]
fn seedance_2_5_takes_audio_as_the_only_reference_and_2_0_does_not() {
    let audio_only = |model: &str| {
        json!({"model": model, "operation": "reference-to-video", "prompt": "a song",
               "audio_urls": [AUD]})
    };
    let job = accepted(audio_only("seedance-2.5"));
    assert_eq!(job.inputs.reference_audios.len(), 1);
    // Without `operation`, audio alone still means reference-to-video.
    let inferred = accepted(without(audio_only("seedance-2.5"), "operation"));
    assert_eq!(inferred.operation, Operation::ReferenceToVideo);
    rejected(
        audio_only("seedance-2.0"),
        "audio_requires_visual_reference",
        Some("audio_urls"),
    );
    // Audio stays a reference-to-video input on 2.5 too.
    let err = rejected(
        with(on_2_5(Operation::ImageToVideo), "audio_urls", json!([AUD])),
        "audio_not_allowed",
        Some("audio_urls"),
    );
    assert!(
        err.message.contains("reference-to-video"),
        "{}",
        err.message
    );
}

#[test]
fn a_draft_is_made_at_the_models_draft_resolution() {
    let draft = accepted(with(on_2_5(Operation::TextToVideo), "draft", true));
    assert!(draft.draft);
    assert_eq!(draft.resolution, Resolution::P480);
    assert!(draft.echo().draft);
    let named = accepted(with(
        with(on_2_5(Operation::TextToVideo), "draft", true),
        "resolution",
        "480p",
    ));
    assert_eq!(named, draft);
    let err = rejected(
        with(
            with(on_2_5(Operation::TextToVideo), "draft", true),
            "resolution",
            "1080p",
        ),
        "unsupported_resolution",
        Some("resolution"),
    );
    assert_eq!(err.extra["allowed_resolutions"], json!(["480p"]));
    // Not a draft: nothing about drafts is stored, so jobs stored before read the same.
    let plain = accepted(on_2_5(Operation::TextToVideo));
    assert!(!plain.draft);
    assert!(serde_json::to_value(&plain).unwrap().get("draft").is_none());
    assert_eq!(
        accepted(with(on_2_5(Operation::TextToVideo), "draft", false)),
        plain
    );
}

#[test]
fn the_output_format_is_one_the_model_makes() {
    let mov = accepted(with(on_2_5(Operation::TextToVideo), "output_format", "mov"));
    assert_eq!(mov.output_format, OutputFormat::Mov);
    assert_eq!(serde_json::to_value(&mov).unwrap()["output_format"], "mov");
    assert_eq!(mov.echo().output_format, OutputFormat::Mov);
    let plain = accepted(with(on_2_5(Operation::TextToVideo), "output_format", "mp4"));
    assert_eq!(plain.output_format, OutputFormat::Mp4);
    // MP4 is left out of the stored job, so jobs stored before the field read the same.
    assert!(serde_json::to_value(&plain)
        .unwrap()
        .get("output_format")
        .is_none());
    for (body, allowed) in [
        (
            with(minimal(Operation::TextToVideo), "output_format", "mov"),
            json!(["mp4"]),
        ),
        (
            with(on_2_5(Operation::TextToVideo), "output_format", "avi"),
            json!(["mp4", "mov"]),
        ),
    ] {
        let err = rejected(body, "unsupported_output_format", Some("output_format"));
        assert_eq!(err.extra["allowed_output_formats"], allowed);
    }
    rejected(
        with(on_2_5(Operation::TextToVideo), "output_format", 4),
        "invalid_type",
        Some("output_format"),
    );
}

#[test]
fn seedance_2_5_makes_frames_edits_and_extensions_only_in_the_inputs_shape() {
    for op in [
        Operation::ImageToVideo,
        Operation::StartEndToVideo,
        Operation::VideoToVideo,
        Operation::VideoExtension,
    ] {
        let err = rejected(
            with(on_2_5(op), "aspect_ratio", "16:9"),
            "invalid_aspect_ratio",
            Some("aspect_ratio"),
        );
        assert!(err.message.contains("`adaptive`"), "{op}: {}", err.message);
        assert_eq!(err.extra["allowed_aspect_ratios"], json!(["adaptive"]));
        accepted(with(on_2_5(op), "aspect_ratio", "adaptive"));
        accepted(on_2_5(op));
        // Seedance 2.0 takes a fixed ratio for the same operation.
        accepted(with(minimal(op), "aspect_ratio", "16:9"));
    }
    for op in [Operation::TextToVideo, Operation::ReferenceToVideo] {
        accepted(with(on_2_5(op), "aspect_ratio", "16:9"));
    }
}

/// The built-in catalog with one more model, whose rules differ from every built-in one
/// only in data.
pub(crate) fn catalog_with_a_data_only_model() -> Catalog {
    let extra = include_str!("../testdata/data_only_model.toml");
    Catalog::from_toml(&format!("{BUILTIN_CATALOG}\n{extra}")).unwrap()
}

#[test]
fn a_model_added_by_data_alone_is_validated_by_its_entry() {
    let catalog = catalog_with_a_data_only_model();
    let parse = |body: Value| parse_job(&catalog, body.to_string().as_bytes());
    let code = |body: Value| parse(body).unwrap_err().code.as_str().to_owned();
    let base = json!({"model": "studio-9", "prompt": "a cat"});
    let job = parse(base.clone()).unwrap();
    assert_eq!(job.duration, DurationRequest::Seconds(3));
    assert_eq!(job.resolution, Resolution::P480);
    assert_eq!(code(with(base.clone(), "duration", 9)), "invalid_duration");
    assert_eq!(
        code(with(base.clone(), "resolution", "720p")),
        "unsupported_resolution"
    );
    assert_eq!(
        code(with(base.clone(), "aspect_ratio", "16:9")),
        "invalid_aspect_ratio"
    );
    // Audio with a first frame, as its entry allows; a fixed ratio there is refused.
    let i2v = json!({"model": "studio-9", "operation": "image-to-video", "prompt": "a cat",
                     "image_url": IMG, "audio_urls": [AUD]});
    assert_eq!(parse(i2v.clone()).unwrap().inputs.reference_audios.len(), 1);
    assert_eq!(
        code(with(i2v, "aspect_ratio", "1:1")),
        "invalid_aspect_ratio"
    );
    let r2v = json!({"model": "studio-9", "operation": "reference-to-video", "prompt": "a cat",
                     "reference_images": urls(IMG, 3)});
    assert_eq!(code(r2v), "too_many_references");
    let audio_only = json!({"model": "studio-9", "operation": "reference-to-video",
                            "prompt": "a cat", "audio_urls": urls(AUD, 4)});
    parse(audio_only).unwrap();
    let edit = json!({"model": "studio-9", "operation": "video-to-video", "prompt": "a cat",
                      "video_url": VID});
    assert_eq!(code(edit), "unsupported_operation");
    // A reference video not read yet reserves the longest input the entry allows (40 s).
    let with_video = parse(
        json!({"model": "studio-9", "operation": "reference-to-video",
                                  "prompt": "a cat", "video_urls": [VID]}),
    )
    .unwrap();
    let quote = crate::pricing::quote(&catalog, &with_video, None, None).unwrap();
    assert_eq!(quote.input_video_millis, 40_000);
}
