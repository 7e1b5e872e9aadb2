//! Every rule of SPEC §2, named after the rule, asserting the exact code and param.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::job::{AspectRatio, DurationRequest, Operation, Resolution};
use crate::{parse_create_request, ApiError, Catalog, VideoJob};

fn parse(body: Value) -> Result<VideoJob, ApiError> {
    parse_create_request(&Catalog::builtin(), body.to_string().as_bytes())
}

fn rejected(body: Value, code: &str, param: Option<&str>) -> ApiError {
    let err = parse(body.clone()).expect_err(&format!("{body} should be rejected"));
    assert_eq!(err.code, code, "{body}: {err:?}");
    assert_eq!(err.status, 400);
    assert_eq!(err.param.as_deref(), param, "{body}");
    err
}

fn t2v(model: &str) -> Value {
    json!({"model": model, "operation": "text-to-video", "prompt": "a cat"})
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn png(width: u32, height: u32) -> Vec<u8> {
    // A minimal PNG header is enough for dimension checks: signature + IHDR.
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    bytes
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[test]
fn minimal_text_to_video_gets_the_defaults() {
    let job = parse(t2v("seedance-2.0")).unwrap();
    assert_eq!(job.operation, Operation::TextToVideo);
    assert_eq!(job.resolution, Resolution::P720);
    assert_eq!(job.aspect_ratio, AspectRatio::W16H9);
    assert_eq!(job.duration, DurationRequest::Seconds(5));
    assert!(job.generate_audio);
    assert!(!job.watermark);
}

#[test]
fn image_operations_default_to_adaptive() {
    let job = parse(
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x",
        "image_url": "https://e.com/a.png"}),
    )
    .unwrap();
    assert_eq!(job.aspect_ratio, AspectRatio::Adaptive);
}

#[test]
fn fast_model_rejects_1080p() {
    let err = rejected(
        with(t2v("seedance-2.0-fast"), "resolution", "1080p".into()),
        "unsupported_resolution",
        Some("resolution"),
    );
    assert_eq!(err.extra["allowed_resolutions"], json!(["480p", "720p"]));
    assert!(err.message.contains("480p, 720p"));
}

#[test]
fn fast_and_mini_reject_4k() {
    for model in ["seedance-2.0-fast", "seedance-2.0-mini"] {
        rejected(
            with(t2v(model), "resolution", "4k".into()),
            "unsupported_resolution",
            Some("resolution"),
        );
    }
    rejected(
        with(t2v("seedance-2.0-mini"), "resolution", "1080p".into()),
        "unsupported_resolution",
        Some("resolution"),
    );
}

#[test]
fn base_model_accepts_4k() {
    assert_eq!(
        parse(with(t2v("seedance-2.0"), "resolution", "4k".into()))
            .unwrap()
            .resolution,
        Resolution::K4
    );
}

#[test]
fn ten_reference_images_rejected() {
    let images: Vec<String> = (0..10).map(|i| format!("https://e.com/{i}.png")).collect();
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x", "reference_images": images});
    let err = rejected(body, "too_many_references", Some("reference_images"));
    assert_eq!(err.extra["limit"], 9);
    let nine: Vec<String> = (0..9).map(|i| format!("https://e.com/{i}.png")).collect();
    assert!(parse(json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x", "reference_images": nine})).is_ok());
}

#[test]
fn four_reference_videos_or_audios_rejected() {
    let four: Vec<String> = (0..4).map(|i| format!("https://e.com/{i}")).collect();
    let base = json!({"model": "seedance-2.0-fast", "operation": "reference-to-video", "prompt": "x",
        "reference_images": ["https://e.com/a.png"]});
    rejected(
        with(base.clone(), "video_urls", json!(four)),
        "too_many_references",
        Some("video_urls"),
    );
    rejected(
        with(base, "audio_urls", json!(four)),
        "too_many_references",
        Some("audio_urls"),
    );
}

#[test]
fn audio_outside_reference_to_video_rejected() {
    let audio = json!(["https://e.com/a.wav"]);
    for body in [
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x"}),
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x", "image_url": "https://e.com/i.png"}),
        json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "x",
            "start_image": "https://e.com/a.png", "end_image": "https://e.com/b.png"}),
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "x", "video_url": "https://e.com/v.mp4"}),
        json!({"model": "seedance-2.0", "operation": "video-extension", "video_url": "https://e.com/v.mp4"}),
    ] {
        rejected(
            with(body, "audio_urls", audio.clone()),
            "audio_not_allowed",
            Some("audio_urls"),
        );
    }
}

#[test]
fn audio_only_references_rejected() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x", "audio_urls": ["https://e.com/a.wav"]}),
        "audio_requires_visual_reference",
        Some("audio_urls"),
    );
}

#[test]
fn reference_to_video_needs_a_visual_reference() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x"}),
        "missing_visual_reference",
        Some("reference_images"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x", "reference_images": []}),
        "missing_visual_reference",
        Some("reference_images"),
    );
}

#[test]
fn unknown_field_rejected() {
    rejected(
        with(t2v("seedance-2.0"), "resolutoin", "720p".into()),
        "unknown_field",
        Some("resolutoin"),
    );
}

#[test]
fn duration_3_and_16_rejected() {
    for d in [3, 16, 0, -2] {
        let err = rejected(
            with(t2v("seedance-2.0"), "duration", d.into()),
            "invalid_duration",
            Some("duration"),
        );
        assert_eq!(err.extra["min"], 4);
        assert_eq!(err.extra["max"], 15);
    }
    rejected(
        with(t2v("seedance-2.0"), "seconds", 16.into()),
        "invalid_duration",
        Some("seconds"),
    );
    for d in [4, 15] {
        assert_eq!(
            parse(with(t2v("seedance-2.0"), "duration", d.into()))
                .unwrap()
                .duration,
            DurationRequest::Seconds(d)
        );
    }
}

#[test]
fn duration_minus_one_lets_the_model_decide() {
    assert_eq!(
        parse(with(t2v("seedance-2.0"), "duration", (-1).into()))
            .unwrap()
            .duration,
        DurationRequest::ModelDecides
    );
}

#[test]
fn non_integer_duration_is_invalid_type() {
    rejected(
        with(t2v("seedance-2.0"), "duration", "5".into()),
        "invalid_type",
        Some("duration"),
    );
    rejected(
        with(t2v("seedance-2.0"), "duration", json!(5.5)),
        "invalid_type",
        Some("duration"),
    );
}

#[test]
fn adaptive_without_visual_input_rejected() {
    rejected(
        with(t2v("seedance-2.0"), "aspect_ratio", "adaptive".into()),
        "adaptive_requires_visual_input",
        Some("aspect_ratio"),
    );
    rejected(
        with(t2v("seedance-2.0"), "ratio", "adaptive".into()),
        "adaptive_requires_visual_input",
        Some("ratio"),
    );
}

#[test]
fn unknown_aspect_ratio_rejected() {
    rejected(
        with(t2v("seedance-2.0"), "aspect_ratio", "2:1".into()),
        "invalid_aspect_ratio",
        Some("aspect_ratio"),
    );
}

#[test]
fn alias_conflicts_rejected() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "duration": 5, "seconds": 6}),
        "alias_conflict",
        Some("seconds"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "aspect_ratio": "1:1", "ratio": "16:9"}),
        "alias_conflict",
        Some("ratio"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "generate_audio": true, "output_audio": false}),
        "alias_conflict",
        Some("output_audio"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x", "image_url": "https://e.com/a.png", "image": "https://e.com/b.png"}),
        "alias_conflict",
        Some("image"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "x", "video_url": "https://e.com/a.mp4", "video": "https://e.com/b.mp4"}),
        "alias_conflict",
        Some("video"),
    );
}

#[test]
fn agreeing_aliases_are_accepted() {
    let job = parse(json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "duration": 6, "seconds": 6,
        "ratio": "9:16", "output_audio": false}))
    .unwrap();
    assert_eq!(job.duration, DurationRequest::Seconds(6));
    assert_eq!(job.aspect_ratio, AspectRatio::W9H16);
    assert!(!job.generate_audio);
}

#[test]
fn unknown_model_rejected() {
    let err = parse(t2v("seedance-9")).unwrap_err();
    assert_eq!(
        (err.code, err.status, err.param.as_deref()),
        ("model_not_found", 400, Some("model"))
    );
    assert_eq!(err.extra["available_models"].as_array().unwrap().len(), 3);
}

#[test]
fn unknown_operation_rejected() {
    let err = rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-image", "prompt": "x"}),
        "unsupported_operation",
        Some("operation"),
    );
    assert_eq!(err.extra["allowed_operations"].as_array().unwrap().len(), 6);
}

#[test]
fn missing_model_operation_or_prompt_rejected() {
    rejected(
        json!({"operation": "text-to-video", "prompt": "x"}),
        "missing_field",
        Some("model"),
    );
    rejected(
        json!({"model": "seedance-2.0", "prompt": "x"}),
        "missing_field",
        Some("operation"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "text-to-video"}),
        "missing_field",
        Some("prompt"),
    );
}

#[test]
fn prompt_length_is_1_to_5000_characters() {
    rejected(
        with(t2v("seedance-2.0"), "prompt", "".into()),
        "invalid_prompt",
        Some("prompt"),
    );
    rejected(
        with(t2v("seedance-2.0"), "prompt", "   ".into()),
        "invalid_prompt",
        Some("prompt"),
    );
    rejected(
        with(t2v("seedance-2.0"), "prompt", "字".repeat(5001).into()),
        "invalid_prompt",
        Some("prompt"),
    );
    assert!(parse(with(
        t2v("seedance-2.0"),
        "prompt",
        "字".repeat(5000).into()
    ))
    .is_ok());
}

#[test]
fn invalid_json_and_non_objects_rejected() {
    for body in [&b"{\"model\":"[..], b"", b"[1,2]", b"\"text\"", b"null"] {
        let err = parse_create_request(&Catalog::builtin(), body).unwrap_err();
        assert_eq!(err.code, "invalid_json");
    }
}

#[test]
fn validation_order_is_schema_then_model_then_operation_then_inputs_then_limits() {
    // Unknown field beats a bad model.
    rejected(
        json!({"model": "nope", "operation": "text-to-video", "prompt": "x", "bogus": 1}),
        "unknown_field",
        Some("bogus"),
    );
    // A wrong type beats a bad model.
    rejected(
        json!({"model": "nope", "operation": "text-to-video", "prompt": "x", "watermark": "yes"}),
        "invalid_type",
        Some("watermark"),
    );
    // A bad model beats a bad resolution.
    let err = parse(
        json!({"model": "nope", "operation": "text-to-video", "prompt": "x", "resolution": "8k"}),
    )
    .unwrap_err();
    assert_eq!(err.code, "model_not_found");
    // A bad operation beats a bad input.
    rejected(
        json!({"model": "seedance-2.0", "operation": "x", "prompt": "x", "audio_urls": ["https://e.com/a"]}),
        "unsupported_operation",
        Some("operation"),
    );
    // A bad input beats a bad limit.
    rejected(
        json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "x", "resolution": "4k", "image_url": "https://e.com/a.png"}),
        "input_not_allowed",
        Some("image_url"),
    );
}

#[test]
fn inputs_an_operation_does_not_take_are_rejected() {
    rejected(
        with(
            t2v("seedance-2.0"),
            "image_url",
            "https://e.com/a.png".into(),
        ),
        "input_not_allowed",
        Some("image_url"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x", "image_url": "https://e.com/a.png",
            "reference_images": ["https://e.com/b.png"]}),
        "input_not_allowed",
        Some("reference_images"),
    );
    // First/last-frame inputs never mix with reference inputs.
    rejected(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x", "reference_images": ["https://e.com/b.png"],
            "start_image": "https://e.com/a.png"}),
        "input_not_allowed",
        Some("start_image"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "x", "video_url": "https://e.com/a.mp4", "task_id": "vtask_01JAAAAAAAAAAAAAAAAAAAAAAA"}),
        "input_not_allowed",
        Some("task_id"),
    );
}

#[test]
fn required_inputs_are_required() {
    rejected(
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x"}),
        "missing_field",
        Some("image_url"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "x", "start_image": "https://e.com/a.png"}),
        "missing_field",
        Some("end_image"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "x"}),
        "missing_field",
        Some("video_url"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-extension"}),
        "missing_field",
        Some("task_id"),
    );
}

#[test]
fn video_extension_takes_a_task_id_or_a_video_not_both() {
    let job = parse(json!({"model": "seedance-2.0", "operation": "video-extension", "task_id": "vtask_01JAAAAAAAAAAAAAAAAAAAAAAA"})).unwrap();
    assert_eq!(
        job.inputs.source_task_id.as_deref(),
        Some("vtask_01JAAAAAAAAAAAAAAAAAAAAAAA")
    );
    assert!(job.prompt.is_none());
    assert!(job.has_video_input());
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-extension", "task_id": "vtask_01JAAAAAAAAAAAAAAAAAAAAAAA", "video_url": "https://e.com/a.mp4"}),
        "conflicting_inputs",
        Some("video_url"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-extension", "task_id": "cgt-123"}),
        "invalid_task_id",
        Some("task_id"),
    );
}

#[test]
fn media_urls_must_be_web_or_data() {
    for bad in [
        "ftp://e.com/a.png",
        "file:///etc/passwd",
        "https://",
        "not a url",
        "https://e.com/a b.png",
    ] {
        rejected(
            json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x", "image_url": bad}),
            "invalid_media_url",
            Some("image_url"),
        );
    }
}

#[test]
fn data_uri_images_are_type_size_and_dimension_checked() {
    let i2v = |uri: String| json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x", "image_url": uri});
    assert!(parse(i2v(data_uri("image/png", &png(640, 360)))).is_ok());
    rejected(
        i2v(data_uri("image/gif", &png(640, 360))),
        "unsupported_media_type",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/png", b"GIF89a-not-really-a-png")),
        "unsupported_media_type",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/png", &png(200, 400))),
        "invalid_image_dimensions",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/png", &png(6001, 3000))),
        "invalid_image_dimensions",
        Some("image_url"),
    );
    rejected(
        i2v(data_uri("image/png", &png(1300, 500))),
        "invalid_image_dimensions",
        Some("image_url"),
    );
    rejected(
        i2v("data:image/png;base64,@@@".into()),
        "invalid_media_url",
        Some("image_url"),
    );
    rejected(
        i2v("data:image/png,plain".into()),
        "invalid_media_url",
        Some("image_url"),
    );
    let mut big = png(640, 360);
    big.resize(10 * 1024 * 1024 + 1, 0);
    rejected(
        i2v(data_uri("image/png", &big)),
        "media_too_large",
        Some("image_url"),
    );
}

#[test]
fn data_uri_video_and_audio_are_type_checked() {
    let mut mp4 = vec![0, 0, 0, 24];
    mp4.extend_from_slice(b"ftypisom");
    mp4.resize(64, 0);
    let wav = [b"RIFF".as_slice(), &[0; 4], b"WAVEfmt "].concat();
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x",
        "video_urls": [data_uri("video/mp4", &mp4)], "audio_urls": [data_uri("audio/wav", &wav)]});
    let job = parse(body).unwrap();
    assert_eq!(job.inputs.reference_videos[0].data_bytes().unwrap(), mp4);
    rejected(
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "x", "video_url": data_uri("video/mp4", b"not a video at all")}),
        "unsupported_media_type",
        Some("video_url"),
    );
    rejected(
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "x", "reference_images": ["https://e.com/a.png"],
            "audio_urls": [data_uri("audio/ogg", &wav)]}),
        "unsupported_media_type",
        Some("audio_urls"),
    );
}

#[test]
fn callback_url_must_be_http() {
    rejected(
        with(
            t2v("seedance-2.0"),
            "callback_url",
            "javascript:alert(1)".into(),
        ),
        "invalid_callback_url",
        Some("callback_url"),
    );
    assert!(parse(with(
        t2v("seedance-2.0"),
        "callback_url",
        "https://hooks.example.com/x".into()
    ))
    .is_ok());
}

#[test]
fn seed_range_is_enforced() {
    rejected(
        with(t2v("seedance-2.0"), "seed", (-2).into()),
        "invalid_seed",
        Some("seed"),
    );
    rejected(
        with(t2v("seedance-2.0"), "seed", 4_294_967_296_i64.into()),
        "invalid_seed",
        Some("seed"),
    );
    assert_eq!(
        parse(with(t2v("seedance-2.0"), "seed", 42.into()))
            .unwrap()
            .seed,
        Some(42)
    );
}

#[test]
fn nulls_count_as_absent() {
    let job = parse(json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "seed": null, "image_url": null})).unwrap();
    assert_eq!(job.seed, None);
}

fn arb_valid_request() -> impl Strategy<Value = Value> {
    let models = prop_oneof![
        Just("seedance-2.0"),
        Just("seedance-2.0-fast"),
        Just("seedance-2.0-mini")
    ];
    let ratios = prop_oneof![
        Just("16:9"),
        Just("4:3"),
        Just("1:1"),
        Just("3:4"),
        Just("9:16"),
        Just("21:9")
    ];
    (models, ratios, 4u32..=15, any::<bool>(), "[a-z ]{1,40}", 0usize..6, 0u32..u32::MAX).prop_map(
        |(model, ratio, duration, audio, prompt, op, seed)| {
            let resolution = if model == "seedance-2.0" { "1080p" } else { "480p" };
            let mut body = json!({"model": model, "operation": Operation::ALL[op].as_str(), "prompt": format!("p{prompt}"),
                "resolution": resolution, "aspect_ratio": ratio, "duration": duration, "generate_audio": audio, "seed": seed});
            match Operation::ALL[op] {
                Operation::TextToVideo => {}
                Operation::ImageToVideo => body["image_url"] = "https://e.com/a.png".into(),
                Operation::StartEndToVideo => {
                    body["start_image"] = "https://e.com/a.png".into();
                    body["end_image"] = "https://e.com/b.png".into();
                }
                Operation::ReferenceToVideo => body["reference_images"] = json!(["https://e.com/a.png"]),
                Operation::VideoToVideo | Operation::VideoExtension => body["video_url"] = "https://e.com/a.mp4".into(),
            }
            body
        },
    )
}

proptest! {
    #[test]
    fn valid_requests_parse_and_round_trip(body in arb_valid_request()) {
        let job = parse(body).unwrap();
        let stored = serde_json::to_string(&job).unwrap();
        let back: VideoJob = serde_json::from_str(&stored).unwrap();
        prop_assert_eq!(back, job);
    }

    #[test]
    fn resolutions_a_model_lacks_are_rejected(res in "[0-9a-z]{1,6}", model in 0usize..3) {
        let catalog = Catalog::builtin();
        let spec = &catalog.models()[model];
        let allowed = spec.resolutions.iter().any(|r| r.as_str() == res);
        let result = parse(with(t2v(&spec.id), "resolution", res.clone().into()));
        if allowed {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(result.unwrap_err().code, "unsupported_resolution");
        }
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_create_request(&Catalog::builtin(), &bytes);
    }

    #[test]
    fn parse_never_panics_on_objects(
        fields in proptest::collection::btree_map(
            prop_oneof![Just("model".to_owned()), Just("operation".to_owned()), Just("prompt".to_owned()),
                Just("duration".to_owned()), Just("reference_images".to_owned()), Just("audio_urls".to_owned()),
                Just("image_url".to_owned()), Just("aspect_ratio".to_owned()), Just("task_id".to_owned()), "[a-z_]{1,12}"],
            prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i64>().prop_map(Value::from),
                "[ -~]{0,20}".prop_map(Value::from), Just(json!(["https://e.com/a"])), Just(json!([1, 2]))],
            0..8,
        )
    ) {
        let body = Value::Object(fields.into_iter().collect());
        if let Err(e) = parse(body) {
            prop_assert!(e.status == 400);
            prop_assert!(!e.message.is_empty());
        }
    }
}
