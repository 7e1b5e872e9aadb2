//! Says so when the H.264 encoder is about to be built without its assembly: `openh264-sys2`
//! falls back to plain C when `nasm` is missing, without a word, and the sandbox then renders
//! 2–3× slower.
#![allow(
    clippy::print_stdout,
    reason = "a build script speaks to cargo on stdout"
)]

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    let x86 = matches!(
        std::env::var("CARGO_CFG_TARGET_ARCH").as_deref(),
        Ok("x86_64" | "x86")
    );
    let nasm = std::process::Command::new("nasm")
        .arg("-v")
        .output()
        .is_ok_and(|out| out.status.success());
    if x86 && !nasm {
        println!(
            "cargo:warning=nasm is not installed, so the sandbox's H.264 encoder is built without \
             its assembly and renders 2-3x slower. Install it (apt-get install nasm), then \
             rebuild the encoder: cargo clean -p openh264-sys2 -p seedgate-media"
        );
    }
}
