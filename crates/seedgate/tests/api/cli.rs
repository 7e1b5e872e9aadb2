//! The operator CLI: keys are created, listed, topped up and revoked against a data dir.

use std::process::Command;

fn seedgate(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SEEDGATE_CONFIG")
        .env_remove("SEEDGATE_DATABASE_URL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn keys_lifecycle_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = seedgate(
        dir.path(),
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--balance-usd",
            "12.5",
            "--test",
        ],
    );
    assert!(ok, "{stderr}");
    let secret = stdout.trim();
    assert!(
        secret.starts_with("sg_test_") && !secret.contains(char::is_whitespace),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "the key alone on stdout");

    let (ok, listing, _) = seedgate(dir.path(), &["keys", "list"]);
    assert!(ok);
    assert!(
        listing.contains("ci") && listing.contains("12.500000") && listing.contains("active"),
        "{listing}"
    );
    assert!(!listing.contains(secret), "list never shows secrets");
    let key_id = listing
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_owned();

    let (ok, out, _) = seedgate(dir.path(), &["keys", "top-up", &key_id, "--usd", "0.5"]);
    assert!(ok);
    assert!(out.contains("13.000000"), "{out}");

    let (ok, _, _) = seedgate(dir.path(), &["keys", "top-up", &key_id, "--usd", "-1"]);
    assert!(!ok, "negative top-ups are refused");
    let (ok, _, stderr) = seedgate(dir.path(), &["keys", "revoke", "key_nope"]);
    assert!(!ok && stderr.contains("no active key"), "{stderr}");

    let (ok, _, _) = seedgate(dir.path(), &["keys", "revoke", &key_id]);
    assert!(ok);
    let (_, listing, _) = seedgate(dir.path(), &["keys", "list"]);
    assert!(listing.contains("revoked"), "{listing}");
}
