//! Property tests of the parser and the estimator over generated requests: valid requests
//! always parse and round-trip, invalid values are always rejected with the right code, and
//! nothing panics whatever the input.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

use crate::catalog::ModelSpec;
use crate::job::{AspectRatio, DurationRequest, Operation, Resolution};
use crate::parse::{FIELDS, UNSUPPORTED_FIELDS};
use crate::parse_tests::{data_uri, parse, png};
use crate::pricing::{input_tokens, output_tokens, price_tokens, quote, token_ceiling};
use crate::{
    parse_create_request, ApiError, Catalog, CreateVideoRequest, ErrorType, RequestEcho, VideoJob,
};

/// Schemes in any case: the parser must lower-case them and keep the rest.
fn url() -> impl Strategy<Value = Value> {
    "[hH][tT][tT][pP][sS]?://e\\.com/[a-z0-9]{1,10}".prop_map(Value::from)
}

/// The C0 and C1 controls a prompt may not contain: all but line breaks and tabs.
fn forbidden_controls() -> Vec<char> {
    ('\u{0}'..='\u{9f}')
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        .collect()
}

fn image() -> BoxedStrategy<Value> {
    let png_uri = (300u32..=2000, 300u32..=2000)
        .prop_filter("aspect 0.4–2.5", |(w, h)| {
            5 * w >= 2 * h && 2 * w <= 5 * h
        })
        .prop_map(|(w, h)| Value::from(data_uri("image/png", &png(w, h))));
    let asset = "[aA][sS][sS][eE][tT]://asset-[0-9]{14}-[a-z0-9]{5}".prop_map(Value::from);
    prop_oneof![3 => url(), 1 => png_uri, 1 => asset].boxed()
}

fn video() -> BoxedStrategy<Value> {
    let mut mp4 = vec![0, 0, 0, 24];
    mp4.extend_from_slice(b"ftypisom");
    mp4.resize(40, 0);
    prop_oneof![3 => url(), 1 => Just(Value::from(data_uri("video/mp4", &mp4)))].boxed()
}

fn audio() -> BoxedStrategy<Value> {
    let wav = [b"RIFF".as_slice(), &[36, 0, 0, 0], b"WAVEfmt "].concat();
    prop_oneof![3 => url(), 1 => Just(Value::from(data_uri("audio/wav", &wav)))].boxed()
}

/// One of two names for the same field.
fn either(primary: &'static str, alias: &'static str) -> impl Strategy<Value = &'static str> {
    select(vec![primary, alias])
}

/// Whether a request of `op` with these inputs would be inferred as `op` without `operation`:
/// always, except video-extension of a video URL, which is video-to-video's input.
fn implies(op: Operation, inputs: &[(&'static str, Value)]) -> bool {
    op != Operation::VideoExtension || inputs.iter().any(|(k, _)| *k == "task_id")
}

/// The media fields of a valid request of `op` on `model`.
fn inputs(op: Operation, model: &ModelSpec) -> BoxedStrategy<Vec<(&'static str, Value)>> {
    let limits = model.reference_limits;
    match op {
        Operation::TextToVideo => Just(Vec::new()).boxed(),
        Operation::ImageToVideo => (either("image_url", "image"), image())
            .prop_map(|(k, v)| vec![(k, v)])
            .boxed(),
        Operation::StartEndToVideo => (image(), image())
            .prop_map(|(s, e)| vec![("start_image", s), ("end_image", e)])
            .boxed(),
        Operation::ReferenceToVideo => (
            either("reference_images", "image_urls"),
            proptest::collection::vec(image(), 0..=limits.images),
            proptest::collection::vec(video(), 0..=limits.videos),
            proptest::collection::vec(audio(), 0..=limits.audios),
        )
            .prop_filter("a visual reference, or audio where it may be alone", {
                let audio_alone = model.audio_only_references;
                move |(_, i, v, a)| !i.is_empty() || !v.is_empty() || (audio_alone && !a.is_empty())
            })
            .prop_map(|(key, i, v, a)| {
                vec![
                    (key, Value::from(i)),
                    ("video_urls", Value::from(v)),
                    ("audio_urls", Value::from(a)),
                ]
            })
            .boxed(),
        Operation::VideoToVideo => (either("video_url", "video"), video())
            .prop_map(|(k, v)| vec![(k, v)])
            .boxed(),
        Operation::VideoExtension => prop_oneof![
            "[0-7][0-9A-HJKMNP-TV-Z]{25}"
                .prop_map(|u| vec![("task_id", Value::from(format!("vtask_{u}")))]),
            (either("video_url", "video"), video()).prop_map(|(k, v)| vec![(k, v)]),
        ]
        .boxed(),
    }
}

/// The optional settings of the platform's dialect, each sent or not at random.
fn arb_settings() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let id = "[A-Za-z0-9_.@-]{1,64}";
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(Just("default")),
        proptest::option::of(3_600u32..=259_200),
        proptest::option::of(0u8..=9),
        proptest::option::of((either("safety_identifier", "user"), id)),
        proptest::option::of(Just(false)),
        proptest::option::of(Just(false)),
    )
        .prop_map(|(last_frame, tier, expires, priority, id, draft, camera)| {
            let mut settings: Vec<(&'static str, Value)> = Vec::new();
            settings.extend(last_frame.map(|v| ("return_last_frame", v.into())));
            settings.extend(tier.map(|v| ("service_tier", v.into())));
            settings.extend(expires.map(|v| ("execution_expires_after", v.into())));
            settings.extend(priority.map(|v| ("priority", v.into())));
            settings.extend(id.map(|(key, v)| (key, v.into())));
            settings.extend(draft.map(|v| ("draft", v.into())));
            settings.extend(camera.map(|v| ("camera_fixed", v.into())));
            settings
        })
}

/// Any valid request of the built-in catalog, using defaults and aliases at random, and
/// leaving `operation` out at random when the inputs imply it.
fn arb_valid_request() -> impl Strategy<Value = Value> {
    let catalog = Catalog::builtin();
    let models = catalog.models().to_vec();
    (select(models), select(Operation::ALL.to_vec())).prop_flat_map(|(model, op)| {
        let ratios = if model.adaptive_only(op) {
            vec![AspectRatio::Adaptive]
        } else {
            model.aspect_ratios.clone()
        };
        let d = model.duration;
        let text = "[a-z][\\PC\n\r\t]{0,60}";
        let prompt = if op == Operation::VideoExtension {
            proptest::option::of(text).boxed()
        } else {
            text.prop_map(Some).boxed()
        };
        (
            (
                Just(model.id.clone()),
                Just(op),
                prompt,
                proptest::option::of(select(model.resolutions.clone())),
                proptest::option::of((select(ratios), either("aspect_ratio", "ratio"))),
                proptest::option::of((
                    prop_oneof![Just(-1i64), i64::from(d.min)..=i64::from(d.max)],
                    either("duration", "seconds"),
                )),
            ),
            (
                proptest::option::of(-1i64..=4_294_967_295),
                proptest::option::of((
                    any::<bool>(),
                    select(vec!["generate_audio", "output_audio", "outputAudio"]),
                )),
                proptest::option::of(any::<bool>()),
                proptest::option::of("[hH][tT][tT][pP][sS]?://hooks\\.e\\.com/[a-z]{1,8}"),
                inputs(op, &model),
                arb_settings(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (model, op, prompt, res, ratio, duration),
                    (seed, audio, watermark, callback, inputs, settings, name_it),
                )| {
                    let mut body = Map::new();
                    body.insert("model".into(), model.into());
                    if name_it || !implies(op, &inputs) {
                        body.insert("operation".into(), op.as_str().into());
                    }
                    if let Some(p) = prompt {
                        body.insert("prompt".into(), p.into());
                    }
                    if let Some(r) = res {
                        body.insert("resolution".into(), r.as_str().into());
                    }
                    if let Some((a, key)) = ratio {
                        body.insert(key.into(), a.as_str().into());
                    }
                    if let Some((d, key)) = duration {
                        body.insert(key.into(), d.into());
                    }
                    if let Some(s) = seed {
                        body.insert("seed".into(), s.into());
                    }
                    if let Some((a, key)) = audio {
                        body.insert(key.into(), a.into());
                    }
                    if let Some(w) = watermark {
                        body.insert("watermark".into(), w.into());
                    }
                    if let Some(c) = callback {
                        body.insert("callback_url".into(), c.into());
                    }
                    for (key, value) in inputs.into_iter().chain(settings) {
                        body.insert(key.into(), value);
                    }
                    Value::Object(body)
                },
            )
    })
}

/// The canonical request body of a job: parsing it must give the job back.
fn to_body(job: &VideoJob) -> Value {
    let duration = match job.duration {
        DurationRequest::Seconds(s) => i64::from(s),
        DurationRequest::ModelDecides => -1,
    };
    let mut body = json!({"model": job.model, "operation": job.operation.as_str(),
        "resolution": job.resolution.as_str(), "aspect_ratio": job.aspect_ratio.as_str(),
        "duration": duration, "generate_audio": job.generate_audio, "watermark": job.watermark,
        "seed": job.seed, "callback_url": job.callback_url, "prompt": job.prompt,
        "return_last_frame": job.return_last_frame, "service_tier": job.service_tier,
        "execution_expires_after": job.execution_expires_after, "priority": job.priority,
        "safety_identifier": job.safety_identifier});
    let i = &job.inputs;
    let one = |m: &Option<crate::MediaInput>| m.as_ref().map(|m| m.as_str().to_owned());
    let all = |v: &[crate::MediaInput]| v.iter().map(|m| m.as_str().to_owned()).collect::<Vec<_>>();
    body["image_url"] = one(&i.image).into();
    body["start_image"] = one(&i.start_image).into();
    body["end_image"] = one(&i.end_image).into();
    body["reference_images"] = all(&i.reference_images).into();
    body["video_urls"] = all(&i.reference_videos).into();
    body["audio_urls"] = all(&i.reference_audios).into();
    body["video_url"] = one(&i.video).into();
    body["task_id"] = i.source_task_id.clone().into();
    body
}

/// Every URL and data URI of a body, in slot order, under whichever name it was sent.
fn sent_urls(body: &Value) -> Vec<&str> {
    let mut urls = Vec::new();
    for key in [
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
        "callback_url",
    ] {
        match body.get(key) {
            Some(Value::String(s)) => urls.push(s.as_str()),
            Some(Value::Array(items)) => urls.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    urls
}

/// What every rejection looks like: a 400 of the request family, naming a real field (or
/// the unknown/duplicated key it found in the body).
fn well_formed_rejection(e: &ApiError, body_keys: &[String]) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.status(), 400);
    prop_assert!(matches!(
        e.error_type(),
        ErrorType::InvalidRequestError | ErrorType::ModelNotFound
    ));
    prop_assert!(!e.message.is_empty());
    if let Some(param) = &e.param {
        prop_assert!(
            FIELDS.contains(&param.as_str()) || body_keys.contains(param),
            "param {} of {:?}",
            param,
            e
        );
    }
    Ok(())
}

/// Leaves that exercise the parser: real names and values mixed with junk.
fn arb_leaf() -> impl Strategy<Value = Value> {
    let known: Vec<Value> = [
        "seedance-2.0",
        "seedance-2.0-fast",
        "seedance-2.0-mini",
        "text-to-video",
        "image-to-video",
        "start-end-to-video",
        "reference-to-video",
        "video-to-video",
        "video-extension",
        "480p",
        "720p",
        "1080p",
        "4k",
        "16:9",
        "adaptive",
        "https://e.com/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "data:video/mp4;base64,AAAAGGZ0eXBpc29t",
        "vtask_01JAAAAAAAAAAAAAAAAAAAAAAA",
        "",
        " ",
    ]
    .into_iter()
    .map(Value::from)
    .collect();
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-20i64..20).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
        select(known),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn unsupported_names() -> Vec<&'static str> {
    UNSUPPORTED_FIELDS.iter().map(|(f, _)| *f).collect()
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(FIELDS.to_vec()).prop_map(str::to_owned),
        1 => select(unsupported_names()).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ]
}

fn keys(body: &Value) -> Vec<String> {
    body.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_requests_always_parse_and_round_trip(body in arb_valid_request()) {
        let job = parse(body.clone()).map_err(|e| TestCaseError::fail(format!("{body}: {e:?}")))?;
        // The persisted form reads back identically.
        let stored = serde_json::to_string(&job).unwrap();
        prop_assert_eq!(&serde_json::from_str::<VideoJob>(&stored).unwrap(), &job);
        // The canonical body of the job parses to the same job.
        prop_assert_eq!(&parse(to_body(&job)).unwrap(), &job);
        // And the job respects its model.
        let catalog = Catalog::builtin();
        let model = catalog.model(&job.model).unwrap();
        prop_assert!(model.resolutions.contains(&job.resolution));
        prop_assert!(model.aspect_ratios.contains(&job.aspect_ratio));
        // Only a prompt alone, or audio as a reference-to-video's only reference (where the
        // model allows it), leaves no picture to follow.
        let audio_alone = job.operation == Operation::ReferenceToVideo
            && job.inputs.reference_images.is_empty()
            && job.inputs.reference_videos.is_empty();
        prop_assert_eq!(
            job.has_visual_input(),
            job.operation != Operation::TextToVideo && !audio_alone
        );
        // Without a ratio the job is adaptive, whatever the operation.
        if body.get("aspect_ratio").is_none() && body.get("ratio").is_none() {
            prop_assert_eq!(job.aspect_ratio, AspectRatio::Adaptive);
        }
        prop_assert_eq!(job.prompt.is_none(), body.get("prompt").is_none());
        if let Some(op) = body.get("operation") {
            prop_assert_eq!(op, job.operation.as_str());
        }
        // URLs are kept as sent but for the scheme, which is lower-cased.
        let canonical = to_body(&job);
        let (sent, kept) = (sent_urls(&body), sent_urls(&canonical));
        prop_assert_eq!(sent.len(), kept.len());
        for (sent, kept) in sent.into_iter().zip(kept) {
            let (scheme, rest) = sent.split_once(':').unwrap();
            prop_assert_eq!(kept, format!("{}:{rest}", scheme.to_ascii_lowercase()));
        }
        // The published schema admits every body the parser accepts.
        prop_assert!(serde_json::from_value::<CreateVideoRequest>(body.clone()).is_ok(), "{}", body);
        // The task object's echo survives its stored form.
        let echo = serde_json::to_string(&job.echo()).unwrap();
        prop_assert_eq!(serde_json::from_str::<RequestEcho>(&echo).unwrap(), job.echo());
    }

    #[test]
    fn resolutions_a_model_lacks_are_rejected(
        model in 0usize..3,
        res in prop_oneof![select(Resolution::ALL.to_vec()).prop_map(|r| r.as_str().to_owned()), "[0-9a-zA-Z]{0,6}"],
    ) {
        let catalog = Catalog::builtin();
        let spec = &catalog.models()[model];
        let body = json!({"model": spec.id, "operation": "text-to-video", "prompt": "x", "resolution": res});
        let offered = spec.resolutions.iter().any(|r| r.as_str() == res);
        match parse(body) {
            Ok(job) => prop_assert!(offered && job.resolution.as_str() == res),
            Err(e) => {
                prop_assert!(!offered);
                prop_assert_eq!(e.code.as_str(), "unsupported_resolution");
                prop_assert_eq!(e.param.as_deref(), Some("resolution"));
                let allowed: Vec<&str> = spec.resolutions.iter().map(|r| r.as_str()).collect();
                prop_assert_eq!(&e.extra["allowed_resolutions"], &json!(allowed));
            }
        }
    }

    #[test]
    fn durations_outside_the_range_are_rejected(d in any::<i64>(), alias in any::<bool>()) {
        let key = if alias { "seconds" } else { "duration" };
        let result = parse(json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", key: d}));
        match d {
            -1 => prop_assert_eq!(result.unwrap().duration, DurationRequest::ModelDecides),
            4..=15 => prop_assert_eq!(result.unwrap().duration, DurationRequest::Seconds(d as u32)),
            _ => {
                let e = result.unwrap_err();
                prop_assert_eq!(
                    (e.code.as_str(), e.param.as_deref()),
                    ("invalid_duration", Some(key))
                );
            }
        }
    }

    #[test]
    fn omitting_the_operation_infers_it_from_the_inputs(body in arb_valid_request()) {
        let job = parse(body.clone()).unwrap();
        let mut implicit = body;
        implicit.as_object_mut().unwrap().remove("operation");
        let inferred = parse(implicit.clone());
        if job.operation == Operation::VideoExtension && job.inputs.video.is_some() {
            // A video URL alone is video-to-video's input, which needs a prompt.
            match inferred {
                Ok(inferred) => {
                    prop_assert_eq!(inferred.operation, Operation::VideoToVideo);
                    prop_assert_eq!(VideoJob { operation: Operation::VideoExtension, ..inferred }, job);
                }
                Err(e) => {
                    prop_assert!(job.prompt.is_none());
                    prop_assert_eq!(
                        (e.code.as_str(), e.param.as_deref()),
                        ("missing_field", Some("prompt"))
                    );
                }
            }
        } else {
            prop_assert_eq!(inferred.map_err(|e| TestCaseError::fail(format!("{implicit}: {e:?}")))?, job);
        }
    }

    #[test]
    fn a_field_of_another_family_is_always_refused(
        body in arb_valid_request(), key in select(unsupported_names()), value in arb_leaf()
    ) {
        prop_assume!(!value.is_null());
        let mut body = body;
        body[key] = value;
        let e = parse(body).unwrap_err();
        prop_assert_eq!(
            (e.code.as_str(), e.param.as_deref()),
            ("unsupported_parameter", Some(key))
        );
    }

    #[test]
    fn an_unknown_field_is_always_rejected(body in arb_valid_request(), key in "[a-z_]{1,16}", value in arb_leaf()) {
        prop_assume!(!FIELDS.contains(&key.as_str()));
        prop_assume!(!unsupported_names().contains(&key.as_str()));
        let mut body = body;
        body[key.as_str()] = value;
        let e = parse(body).unwrap_err();
        prop_assert_eq!(
            (e.code.as_str(), e.param.as_deref()),
            ("unknown_field", Some(key.as_str()))
        );
    }

    #[test]
    fn a_control_character_anywhere_in_a_prompt_is_refused(
        body in arb_valid_request(),
        before in "[\\PC\n\r\t]{0,30}",
        control in select(forbidden_controls()),
        after in "[\\PC\n\r\t]{0,30}",
    ) {
        let mut body = body;
        body["prompt"] = format!("{before}{control}{after}").into();
        let e = parse(body).unwrap_err();
        prop_assert_eq!(
            (e.code.as_str(), e.param.as_deref()),
            ("invalid_prompt", Some("prompt"))
        );
        let at = format!("U+{:04X} at character index {}", u32::from(control), before.chars().count());
        prop_assert!(e.message.contains(&at), "{}", e.message);
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_create_request(&Catalog::builtin(), &bytes) {
            prop_assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn parse_never_panics_on_damaged_valid_bodies(
        body in arb_valid_request(), cut in any::<prop::sample::Index>(), junk in proptest::collection::vec(any::<u8>(), 0..8)
    ) {
        let mut bytes = body.to_string().into_bytes();
        let at = cut.index(bytes.len() + 1);
        bytes.splice(at..at, junk);
        let _ = parse_create_request(&Catalog::builtin(), &bytes);
        bytes.truncate(at);
        let _ = parse_create_request(&Catalog::builtin(), &bytes);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_json_objects(
        fields in proptest::collection::btree_map(arb_key(), arb_json(), 0..10)
    ) {
        let body = Value::Object(fields.into_iter().collect());
        if let Err(e) = parse(body.clone()) {
            well_formed_rejection(&e, &keys(&body))?;
        }
    }

    #[test]
    fn changing_one_field_of_a_valid_request_never_panics(
        body in arb_valid_request(), key in arb_key(), value in arb_json()
    ) {
        let mut body = body;
        body[key.as_str()] = value;
        match parse(body.clone()) {
            Ok(job) => {
                let stored = serde_json::to_string(&job).unwrap();
                prop_assert_eq!(serde_json::from_str::<VideoJob>(&stored).unwrap(), job);
            }
            Err(e) => well_formed_rejection(&e, &keys(&body))?,
        }
    }

    #[test]
    fn the_token_ceiling_bounds_every_reservation(body in arb_valid_request(), ms in proptest::option::of(0u64..=15_000)) {
        let catalog = Catalog::builtin();
        let job = parse(body).unwrap();
        let ceiling = token_ceiling(&catalog, catalog.model(&job.model).unwrap()).unwrap();
        let q = quote(&catalog, &job, ms, None).unwrap();
        prop_assert!(q.output_tokens <= ceiling.output);
        prop_assert!(!job.has_video_input() || job.operation.may_take_video());
        prop_assert!(q.input_tokens <= ceiling.input.unwrap_or(0));
    }

    #[test]
    fn the_reservation_bounds_the_settlement(body in arb_valid_request(), actual_ms in 0u64..=15_000, known in any::<bool>()) {
        let catalog = Catalog::builtin();
        let job = parse(body).unwrap();
        let model = catalog.model(&job.model).unwrap();
        let reserved_ms = known.then_some(actual_ms);
        let q = quote(&catalog, &job, reserved_ms, None).unwrap();
        // Every size the video can be made at: the one its ratio decides, or any when it
        // follows an input not read yet.
        let sizes: Vec<(u32, u32)> = match job.output_ratio(None) {
            Some(a) => vec![catalog.output_size(job.resolution, a).unwrap()],
            None => AspectRatio::FIXED.iter().map(|a| catalog.output_size(job.resolution, *a).unwrap()).collect(),
        };
        let durations: Vec<u32> = match job.duration {
            DurationRequest::Seconds(s) => vec![s],
            DurationRequest::ModelDecides => (model.duration.min..=model.duration.max).collect(),
        };
        let video = job.has_video_input();
        for &(w, h) in &sizes {
            for &s in &durations {
                let mut tokens = output_tokens(w, h, s);
                if video {
                    tokens += input_tokens(w, h, actual_ms);
                }
                let cost = price_tokens(&catalog, &job.model, job.resolution, video, tokens).unwrap();
                prop_assert!(cost.usd_micros <= q.cost.usd_micros, "{} > {} for {}x{} {}s", cost.usd_micros, q.cost.usd_micros, w, h, s);
            }
        }
    }
}
