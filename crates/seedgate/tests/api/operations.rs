//! Every operation end to end: create → poll → completed → download → ffprobe.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{ffprobe, MediaServer, Storage, TestApp};

const RENDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates, waits, downloads and checks the MP4 against the expected size, length and audio.
async fn assert_renders(
    app: &TestApp,
    body: Value,
    width: u64,
    height: u64,
    seconds: f64,
    audio: bool,
) -> Value {
    let (status, created) = app.create(&body).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["provider"], "sandbox");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["task_id"], id.as_str());
    assert_eq!(created["poll_url"], format!("/v1/tasks/{id}"));
    assert!(created["estimated_cost"]["amount"].as_str().is_some());

    let done = app.wait_terminal(&id, RENDER_TIMEOUT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["width"].as_u64(), Some(width));
    assert_eq!(done["result"]["height"].as_u64(), Some(height));
    assert_eq!(done["result"]["has_audio"].as_bool(), Some(audio));
    assert!(done["usage"]["tokens"].as_u64().unwrap() > 0);
    assert!(done["cost"]["amount"].as_str().is_some());

    let url = done["video_url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(done["result"]["video_url"], url);
    let (status, mp4) = app.download(url).await;
    assert_eq!(status, 200);
    let probe = ffprobe(&mp4);
    assert_eq!(probe.codec, "h264");
    assert_eq!((probe.width, probe.height), (width, height));
    assert_eq!(probe.fps, "24/1");
    assert!(
        (probe.duration - seconds).abs() <= 0.1,
        "duration {} vs {seconds}",
        probe.duration
    );
    assert_eq!(probe.has_audio, audio);

    let (status, png) = app.download(done["last_frame_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(&png[1..4], b"PNG");
    done
}

#[tokio::test]
async fn text_to_video_renders_exact_mp4() {
    let app = TestApp::spawn().await;
    let body = json!({"model": "seedance-2.0", "operation": "text-to-video",
        "prompt": "a lighthouse at dusk", "resolution": "480p", "duration": 4, "aspect_ratio": "9:16"});
    let done = assert_renders(&app, body, 496, 864, 4.0, true).await;
    // floor(496 × 864 × (24 × 4 + 1) / 1024) = 40,594 tokens.
    assert_eq!(done["usage"]["tokens"], 40_594);
}

#[tokio::test]
async fn image_to_video_renders_exact_mp4() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let body = json!({"model": "seedance-2.0-fast", "operation": "image-to-video",
        "prompt": "slow push in", "image_url": media.url("start.png"), "resolution": "480p",
        "duration": 4, "aspect_ratio": "16:9", "generate_audio": false});
    assert_renders(&app, body, 864, 496, 4.0, false).await;
}

#[tokio::test]
async fn image_to_video_adaptive_follows_the_image() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    // A 400×720 portrait image is closest to 9:16.
    let body = json!({"model": "seedance-2.0-mini", "operation": "image-to-video",
        "prompt": "a portrait comes alive", "image": media.url("portrait.jpg"), "resolution": "480p",
        "seconds": 4, "output_audio": false});
    assert_renders(&app, body, 496, 864, 4.0, false).await;
}

#[tokio::test]
async fn start_end_to_video_renders_exact_mp4() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let body = json!({"model": "seedance-2.0", "operation": "start-end-to-video",
        "prompt": "day turns to night", "start_image": media.url("start.png"),
        "end_image": media.url("end.png"), "resolution": "480p", "duration": 4, "aspect_ratio": "1:1"});
    assert_renders(&app, body, 640, 640, 4.0, true).await;
}

#[tokio::test]
async fn reference_to_video_renders_exact_mp4() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video",
        "prompt": "keep the product identity", "reference_images": [media.url("start.png"), media.url("portrait.jpg")],
        "video_urls": [media.url("clip.mp4")], "audio_urls": [media.url("tone.wav")],
        "resolution": "480p", "duration": 5, "aspect_ratio": "4:3"});
    let done = assert_renders(&app, body, 752, 560, 5.0, true).await;
    // Output tokens plus the 2 s reference video's input tokens.
    let output = 752 * 560 * (24 * 5 + 1) / 1024;
    let input = 752 * 560 * 24 * 2 / 1024;
    assert_eq!(done["usage"]["tokens"].as_u64(), Some(output + input));
}

#[tokio::test]
async fn seedance_2_5_renders_thirty_seconds_from_thirty_reference_images() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let images: Vec<String> = (0..30u8)
        .map(|i| {
            format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(crate::helpers::png_bytes(
                    320,
                    320,
                    i * 8
                ))
            )
        })
        .collect();
    let body = json!({"model": "seedance-2.5", "operation": "reference-to-video",
        "prompt": "thirty looks at one product", "reference_images": images,
        "resolution": "480p", "duration": 30, "aspect_ratio": "16:9", "generate_audio": false});
    let done = assert_renders(&app, body, 864, 496, 30.0, false).await;
    // floor(864 × 496 × (24 × 30 + 1) / 1024) tokens at 2.5's 69 CNY per million.
    let tokens = 864 * 496 * (24 * 30 + 1) / 1024;
    assert_eq!(done["usage"]["tokens"].as_u64(), Some(tokens));
    let (status, quote) = app
        .call(
            "POST",
            "/v1/videos/quote",
            &app.key,
            Some(
                &json!({"model": "seedance-2.5", "prompt": "x", "resolution": "480p",
                "duration": 30, "aspect_ratio": "16:9"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["tokens"]["billed"], tokens);
    assert_eq!(done["cost"]["amount"], quote["cost"]["amount"]);
}

#[tokio::test]
async fn duration_minus_one_reserves_the_longest_and_charges_what_was_made() {
    let app = TestApp::spawn().await;
    let body = json!({"model": "seedance-2.5", "prompt": "the model picks the length",
        "resolution": "480p", "duration": -1, "aspect_ratio": "16:9", "generate_audio": false});
    let (status, quote) = app
        .call("POST", "/v1/videos/quote", &app.key, Some(&body))
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["output_seconds"], 30);
    assert_eq!(quote["model_decides_duration"], true);
    let longest = 864 * 496 * (24 * 30 + 1) / 1024;
    assert_eq!(quote["tokens"]["billed"], longest);
    let (status, created) = app.create(&body).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["estimated_cost"]["tokens"], longest);
    assert_eq!(created["estimated_cost"]["amount"], quote["cost"]["amount"]);

    let done = app
        .wait_terminal(created["id"].as_str().unwrap(), RENDER_TIMEOUT)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
    let made = ffprobe(&mp4).duration;
    // The sandbox, like the model, picks a length of its own (the model's default, 5 s).
    assert!((made - 5.0).abs() <= 0.1, "{made}");
    let charged = 864 * 496 * (24 * 5 + 1) / 1024;
    assert_eq!(done["usage"]["tokens"], charged);
    // The ledger holds the charge for 5 s; the rest of the 30 s reservation went back.
    let usd = |micros: i64| format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    let spent = 100_000_000 - app.balance(&app.account_id).await;
    assert_eq!(usd(spent), done["cost"]["amount"].as_str().unwrap());
}

#[tokio::test]
async fn seedance_2_5_makes_a_quicktime_file_when_asked() {
    let app = TestApp::spawn().await;
    let body = json!({"model": "seedance-2.5", "prompt": "a boat in a bottle", "resolution": "480p",
        "duration": 4, "aspect_ratio": "1:1", "output_format": "mov"});
    let done = assert_renders(&app, body, 640, 640, 4.0, true).await;
    assert_eq!(done["request"]["output_format"], "mov");
    assert_eq!(done["result"]["container"], "mov");
    let url = done["video_url"].as_str().unwrap();
    assert!(url.contains("/video.mov?"), "{url}");
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "video/quicktime");
    let probe = ffprobe(&response.bytes().await.unwrap());
    assert_eq!(probe.major_brand, "qt  ");

    let mp4 = json!({"model": "seedance-2.5", "prompt": "a boat in a bottle",
        "resolution": "480p", "duration": 4, "aspect_ratio": "1:1"});
    let done = assert_renders(&app, mp4, 640, 640, 4.0, true).await;
    assert_eq!(done["result"]["container"], "mp4");
    assert!(done["request"].get("output_format").is_none(), "{done}");
    let (_, bytes) = app.download(done["video_url"].as_str().unwrap()).await;
    assert_eq!(ffprobe(&bytes).major_brand, "isom");

    let (status, refused) = app
        .create(&json!({"model": "seedance-2.0", "prompt": "x", "output_format": "mov"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "unsupported_output_format");
    assert_eq!(refused["error"]["allowed_output_formats"], json!(["mp4"]));
}

#[tokio::test]
async fn a_seedance_2_5_draft_is_a_480p_preview_billed_on_its_own() {
    let app = TestApp::spawn().await;
    let body = json!({"model": "seedance-2.5", "prompt": "a lantern festival", "duration": 4,
        "aspect_ratio": "16:9", "draft": true, "generate_audio": false});
    let (status, quote) = app
        .call("POST", "/v1/videos/quote", &app.key, Some(&body))
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["resolution"], "480p");
    let done = assert_renders(&app, body, 864, 496, 4.0, false).await;
    assert_eq!(done["request"]["draft"], true);
    assert_eq!(done["request"]["resolution"], "480p");
    assert_eq!(done["draft_task_id"], done["id"]);
    assert_eq!(done["cost"]["amount"], quote["cost"]["amount"]);
    let spent = 100_000_000 - app.balance(&app.account_id).await;
    assert_eq!(
        format!("{}.{:06}", spent / 1_000_000, spent % 1_000_000),
        done["cost"]["amount"].as_str().unwrap()
    );

    // A draft is made at 480p only, and only by a model with a draft mode.
    let (status, refused) = app
        .create(
            &json!({"model": "seedance-2.5", "prompt": "x", "draft": true,
            "resolution": "720p"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "unsupported_resolution");
    assert_eq!(refused["error"]["allowed_resolutions"], json!(["480p"]));
    let (status, refused) = app
        .create(&json!({"model": "seedance-2.0", "prompt": "x", "draft": true}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "unsupported_parameter");
    // An ordinary task carries no draft handle.
    let plain = json!({"model": "seedance-2.5", "prompt": "x", "resolution": "480p",
        "duration": 4, "generate_audio": false});
    let done = assert_renders(&app, plain, 864, 496, 4.0, false).await;
    assert!(done.get("draft_task_id").is_none(), "{done}");
}

#[tokio::test]
async fn seedance_2_5_takes_audio_as_its_only_reference() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let audio = format!(
        "data:audio/wav;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(square_then_silence_wav())
    );
    let body = |model: &str| {
        json!({"model": model, "operation": "reference-to-video", "prompt": "the bell rings",
            "audio_urls": [audio], "resolution": "480p", "duration": 4})
    };
    let done = assert_renders(&app, body("seedance-2.5"), 864, 496, 4.0, true).await;
    let (status, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(band_volume(&mp4, 0.2, 1.8) > band_volume(&mp4, 2.3, 3.8) + 12.0);
    let (status, refused) = app.create(&body("seedance-2.0")).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "audio_requires_visual_reference");
}

/// A 16-bit mono WAV at 44.1 kHz: a 1 kHz square wave for 2 s, then 2 s of silence.
fn square_then_silence_wav() -> Vec<u8> {
    let rate = 44_100u32;
    let samples: Vec<i16> = (0..rate * 4)
        .map(|n| match n {
            n if n >= rate * 2 => 0,
            n if (n * 2000 / rate).is_multiple_of(2) => 16_000,
            _ => -16_000,
        })
        .collect();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + samples.len() as u32 * 2).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    for field in [16u32, 1 | (1 << 16), rate, rate * 2, 2 | (16 << 16)] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(samples.len() as u32 * 2).to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    out
}

/// ffmpeg's mean volume (dB) of an MP4's audio from `start` to `end` s, around 1 kHz.
fn band_volume(mp4: &[u8], start: f64, end: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4");
    std::fs::write(&path, mp4).unwrap();
    let filter = format!("atrim={start}:{end},bandpass=f=1000:width_type=q:w=4,volumedetect");
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(&path)
        .args(["-map", "0:a", "-af", &filter, "-f", "null", "-"])
        .output()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .rev()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no volumedetect in {log}"))
}

#[tokio::test]
async fn the_sandbox_mixes_reference_audio_into_its_soundtrack() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let audio = format!(
        "data:audio/wav;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(square_then_silence_wav())
    );
    let body = |audio_urls: Option<&str>| {
        let mut body = json!({"model": "seedance-2.0-fast", "operation": "reference-to-video",
            "prompt": "the bell rings", "reference_images": [media.url("start.png")],
            "resolution": "480p", "duration": 5, "aspect_ratio": "16:9", "seed": 21});
        if let Some(url) = audio_urls {
            body["audio_urls"] = json!([url]);
        }
        body
    };
    let mut files = Vec::new();
    for request in [body(Some(&audio)), body(None), body(Some(&audio))] {
        let done = assert_renders(&app, request, 864, 496, 5.0, true).await;
        let (status, bytes) = app
            .download(done["result"]["video_url"].as_str().unwrap())
            .await;
        assert_eq!(status, 200);
        files.push(bytes);
    }
    let [with, without, again] = &files[..] else {
        unreachable!()
    };
    // Each task's caption names it, so only the soundtracks can be compared across tasks.
    let (playing, bare) = (band_volume(with, 0.2, 1.8), band_volume(without, 0.2, 1.8));
    assert_eq!(
        playing,
        band_volume(again, 0.2, 1.8),
        "same request and inputs, same sound"
    );
    assert!(
        playing > bare + 12.0,
        "1 kHz while the reference plays: {playing} dB with it, {bare} dB without"
    );
    let (after, bare_after) = (band_volume(with, 2.3, 3.8), band_volume(without, 2.3, 3.8));
    assert!(
        after < bare_after + 1.0 && playing > after + 12.0,
        "1 kHz once the reference is silent: {after} dB with it, {bare_after} dB without"
    );
}

#[tokio::test]
async fn video_to_video_renders_exact_mp4() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let body = json!({"model": "seedance-2.0-fast", "operation": "video-to-video",
        "prompt": "make it look like film", "video_url": media.url("clip.mp4"),
        "resolution": "480p", "duration": 4, "aspect_ratio": "21:9", "generate_audio": false});
    assert_renders(&app, body, 992, 432, 4.0, false).await;
}

/// The source is read back from storage, so this runs on each store.
#[tokio::test]
async fn video_extension_continues_a_finished_task() {
    for storage in Storage::BOTH {
        video_extension_continues_a_finished_task_on(storage).await;
    }
}

async fn video_extension_continues_a_finished_task_on(storage: Storage) {
    let app = TestApp::spawn_on(storage, |_| {}, true).await;
    let source = json!({"model": "seedance-2.0", "operation": "text-to-video",
        "prompt": "waves", "resolution": "480p", "duration": 4, "generate_audio": false});
    let first = assert_renders(&app, source, 864, 496, 4.0, false).await;
    let body = json!({"model": "seedance-2.0", "operation": "video-extension",
        "task_id": first["id"], "prompt": "the waves calm down", "resolution": "480p", "duration": 4});
    assert_renders(&app, body, 864, 496, 4.0, true).await;
}

#[tokio::test]
async fn video_extension_of_a_url_renders_exact_mp4() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let body = json!({"model": "seedance-2.0-mini", "operation": "video-extension",
        "video_url": media.url("clip.mp4"), "resolution": "480p", "duration": 4, "aspect_ratio": "16:9",
        "generate_audio": false});
    assert_renders(&app, body, 864, 496, 4.0, false).await;
}

/// The vendor page's own example for the fast model, verbatim but for key and host.
#[tokio::test]
async fn seed_page_fast_text_to_video_example_succeeds() {
    let app = TestApp::spawn().await;
    let body = json!({
        "model": "seedance-2.0-fast",
        "operation": "text-to-video",
        "prompt": "白色棚拍背景上的干净商品揭示镜头，镜头轻微推进。",
        "duration": 5,
        "resolution": "720p",
        "aspect_ratio": "16:9"
    });
    let done = assert_renders(&app, body, 1280, 720, 5.0, true).await;
    assert_eq!(done["usage"]["tokens"], 108_900);
    // 108,900 tokens × 37 CNY per million = 4.0293 CNY = 0.592544 USD.
    assert_eq!(done["cost"]["amount"], "0.592544");
}

#[tokio::test]
async fn unreachable_input_fails_the_task_without_charge() {
    let app = TestApp::spawn().await;
    let body = json!({"model": "seedance-2.0", "operation": "image-to-video",
        "prompt": "x", "image_url": "http://127.0.0.1:9/missing.png", "resolution": "480p"});
    let (status, created) = app.create(&body).await;
    assert_eq!(status, 200, "{created}");
    let done = app
        .wait_terminal(created["id"].as_str().unwrap(), RENDER_TIMEOUT)
        .await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["cancelled"], false);
    assert_eq!(done["error"]["code"], "input_fetch_failed");
    assert!(done["cost"].is_null());
    assert_eq!(app.balance(&app.account_id).await, 100_000_000);
}

/// The most common MP4 people have: ffmpeg's defaults (H.264 High with B-frames), and H.265.
#[tokio::test]
async fn videos_made_with_ffmpegs_defaults_and_h265_are_read_by_the_sandbox() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    for codec in ["libx264", "libx265"] {
        let file = dir.path().join(format!("{codec}.mp4"));
        let made = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=24",
            ])
            .args(["-t", "3", "-pix_fmt", "yuv420p", "-c:v", codec])
            .arg(&file)
            .status()
            .expect("ffmpeg must be installed (Debian package ffmpeg)");
        assert!(made.success());
        let video = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&file).unwrap());
        let body = json!({"model": "seedance-2.0-fast", "operation": "video-to-video",
            "prompt": "film look", "resolution": "480p", "duration": 4, "aspect_ratio": "16:9",
            "generate_audio": false, "video_url": format!("data:video/mp4;base64,{video}")});
        assert_renders(&app, body, 864, 496, 4.0, false).await;
    }
}

/// One rule decides the size: what the quote shows is what the create reserves and what the
/// file is, for `adaptive` with a prompt alone (16:9) and following an inline image.
#[tokio::test]
async fn the_quote_describes_the_video_that_will_be_made() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let portrait = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(crate::helpers::jpeg_bytes(400, 720))
    );
    let cases = [
        (
            json!({"model": "seedance-2.0-fast", "prompt": "a kite over the sea",
                "resolution": "480p", "duration": 4, "generate_audio": false}),
            (864, 496),
        ),
        (
            json!({"model": "seedance-2.0-fast", "prompt": "a portrait comes alive",
                "image_url": portrait, "resolution": "480p", "duration": 4,
                "generate_audio": false}),
            (496, 864),
        ),
    ];
    for (body, size) in cases {
        let (status, quote) = app
            .call("POST", "/v1/videos/quote", &app.key, Some(&body))
            .await;
        assert_eq!(status, 200, "{quote}");
        let quoted = (
            quote["width"].as_u64().unwrap(),
            quote["height"].as_u64().unwrap(),
        );
        assert_eq!(quoted, size, "{quote}");
        let tokens = quoted.0 * quoted.1 * (24 * 4 + 1) / 1024;
        assert_eq!(quote["tokens"]["billed"], tokens, "{quote}");

        let (status, created) = app.create(&body).await;
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["request"]["aspect_ratio"], "adaptive");
        assert_eq!(created["estimated_cost"]["tokens"], tokens, "{created}");
        assert_eq!(created["estimated_cost"]["amount"], quote["cost"]["amount"]);

        let id = created["id"].as_str().unwrap();
        let done = app.wait_terminal(id, RENDER_TIMEOUT).await;
        assert_eq!(done["status"], "completed", "{done}");
        let result = (
            done["result"]["width"].as_u64().unwrap(),
            done["result"]["height"].as_u64().unwrap(),
        );
        assert_eq!(result, quoted, "{done}");
        let (status, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        let probe = ffprobe(&mp4);
        assert_eq!((probe.width, probe.height), quoted);
        // Charged exactly what was reserved: the estimate was the video's own count.
        assert_eq!(done["usage"]["tokens"], tokens, "{done}");
        assert_eq!(done["cost"]["amount"], quote["cost"]["amount"], "{done}");
    }
}

/// A task object carries what was asked: the prompt, seed and settings, and each input summed
/// up (an inline one by its type, size, pixels or seconds, never its bytes), on `/v1` and
/// `/api/v3` alike.
#[tokio::test]
async fn a_task_shows_what_was_asked_and_its_inputs_but_never_their_bytes() {
    use base64::Engine as _;
    let app = TestApp::spawn_without_workers().await;
    let media = MediaServer::start().await;
    let png = crate::helpers::png_bytes(640, 360, 40);
    let wav = crate::helpers::wav_bytes();
    let encode = |mime: &str, bytes: &[u8]| {
        format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let body = json!({"model": "seedance-2.5", "operation": "reference-to-video",
        "prompt": "the product on a turntable", "seed": 42, "resolution": "480p",
        "duration": 5, "aspect_ratio": "16:9", "generate_audio": false,
        "reference_images": [media.url("start.png"), encode("image/png", &png)],
        "audio_urls": [encode("audio/wav", &wav)],
        "priority": 3, "safety_identifier": "user-7", "return_last_frame": true});
    let (status, created) = app.create(&body).await;
    assert_eq!(status, 200, "{created}");
    let (_, task) = app.task(created["id"].as_str().unwrap()).await;
    let request = &task["request"];
    assert_eq!(request["prompt"], "the product on a turntable");
    assert_eq!(
        (&request["seed"], &request["priority"]),
        (&json!(42), &json!(3))
    );
    assert_eq!(request["safety_identifier"], "user-7");
    assert_eq!(request["return_last_frame"], true);
    assert_eq!(
        request["inputs"],
        json!([
            {"field": "reference_images", "kind": "image", "source": "url",
             "url": media.url("start.png")},
            {"field": "reference_images", "kind": "image", "source": "data",
             "mime": "image/png", "bytes": png.len(), "width": 640, "height": 360},
            {"field": "audio_urls", "kind": "audio", "source": "data", "mime": "audio/wav",
             "bytes": wav.len(), "duration": request["inputs"][2]["duration"]},
        ])
    );
    let seconds = request["inputs"][2]["duration"].as_f64().unwrap();
    assert!(
        (seconds - 3.0).abs() < 0.01,
        "the audio was measured: {seconds}"
    );
    assert!(
        !task.to_string().contains("base64"),
        "no inline bytes in {task}"
    );

    // Ark's shape names the settings its document has, and nothing else.
    let ark_id = task["id"].as_str().unwrap().replacen("vtask_", "cgt-", 1);
    let (_, ark) = app
        .get_path(&format!("/api/v3/contents/generations/tasks/{ark_id}"))
        .await;
    assert_eq!((&ark["seed"], &ark["priority"]), (&json!(42), &json!(3)));
    assert_eq!(ark["safety_identifier"], "user-7");
    assert!(ark.get("prompt").is_none(), "{ark}");
}
