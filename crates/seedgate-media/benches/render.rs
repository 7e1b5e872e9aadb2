//! Sandbox render speed: 5 s text-to-video with audio at 720p, 1080p and 4k (median of 3).
//! Run with `cargo bench -p seedgate-media --bench render`; figures go to BENCHMARKS.md.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use seedgate_media::{render, RenderRequest, Scene};

fn main() {
    for (label, width, height) in [
        ("720p", 1280, 720),
        ("1080p", 1920, 1080),
        ("4k", 3840, 2160),
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let rendered = render(&RenderRequest {
                scene: Scene::Pattern {
                    prompt: "benchmark",
                },
                audios: Vec::new(),
                container: Default::default(),
                width,
                height,
                fps: 24,
                frames: 120,
                seed: 1,
                audio: true,
                caption: vec![
                    "SANDBOX · seedance-2.0 · benchmark".into(),
                    "benchmark".into(),
                    "vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
                ],
            })
            .unwrap();
            times.push(started.elapsed().as_secs_f64());
            bytes = rendered.mp4.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{label:>5} {width}x{height}, 120 frames + AAC: median {:.2} s (min {:.2}, max {:.2}), {} KiB",
            times[1],
            times[0],
            times[2],
            bytes / 1024
        );
    }
}
