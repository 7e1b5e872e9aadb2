//! The operator CLI: keys are created, listed, topped up and revoked against a data dir.

use std::process::Command;

fn seedgate(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SEEDGATE_CONFIG")
        .env(
            "SEEDGATE_DATABASE_URL",
            crate::helpers::database_url(data_dir),
        )
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

#[test]
fn organizations_and_their_keys_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = seedgate(
        dir.path(),
        &["orgs", "create", "--name", "acme", "--balance-usd", "20"],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let [org, token] = lines[..] else {
        panic!("the id and the token, alone: {stdout}")
    };
    assert!(
        org.starts_with("org_") && token.starts_with("sg_mgmt_"),
        "{stdout}"
    );

    let (ok, listing, _) = seedgate(dir.path(), &["orgs", "list"]);
    assert!(ok);
    assert!(
        listing.contains(org) && listing.contains("20.000000") && listing.contains("issued"),
        "{listing}"
    );
    assert!(!listing.contains(token), "list never shows tokens");

    let (ok, out, _) = seedgate(dir.path(), &["orgs", "top-up", org, "--usd", "2.5"]);
    assert!(ok && out.contains("22.500000"), "{out}");
    let (ok, _, stderr) = seedgate(dir.path(), &["orgs", "top-up", "org_nope", "--usd", "1"]);
    assert!(!ok && stderr.contains("no organization"), "{stderr}");

    // A key joins the named organization and spends its balance.
    let (ok, secret, stderr) =
        seedgate(dir.path(), &["keys", "create", "--name", "k", "--org", org]);
    assert!(ok, "{stderr}");
    assert!(secret.trim().starts_with("sg_live_"));
    let (_, keys, _) = seedgate(dir.path(), &["keys", "list"]);
    let row = keys.lines().find(|l| l.contains(" k ")).unwrap();
    assert!(row.contains(org) && row.contains("22.500000"), "{keys}");
    let (ok, _, stderr) = seedgate(
        dir.path(),
        &["keys", "create", "--name", "k", "--org", "org_nope"],
    );
    assert!(!ok && stderr.contains("org_nope"), "{stderr}");

    let (ok, rotated, _) = seedgate(dir.path(), &["orgs", "rotate-token", org]);
    assert!(ok && rotated.trim().starts_with("sg_mgmt_") && rotated.trim() != token);
}

#[tokio::test]
async fn channels_check_reports_reachability_and_key_validity() {
    let fake = crate::fake_ark::FakeArk::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    let channel = |id: &str, env: &str, base: &str| {
        format!(
            "[[channels]]\nid = \"{id}\"\nprovider = \"ark\"\nbase_url = \"{base}\"\napi_key_env = \"{env}\"\n\
             resolutions = [\"720p\"]\nmodels = {{ \"seedance-2.0\" = \"doubao-seedance-2-0-260128\" }}\ntimeout_seconds = 2\n"
        )
    };
    std::fs::write(
        &config,
        [
            channel("good", crate::fake_ark::FAKE_KEY_ENV, &fake.base_url),
            channel("wrong-key", "SEEDGATE_TEST_WRONG_KEY", &fake.base_url),
            channel(
                "down",
                crate::fake_ark::FAKE_KEY_ENV,
                "http://127.0.0.1:9/api/v3",
            ),
        ]
        .join("\n"),
    )
    .unwrap();
    // The fake upstream runs on this test's runtime: wait for the command off it.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_seedgate"))
            .args(["channels", "check", "--config"])
            .arg(&config)
            .env("SEEDGATE_TEST_WRONG_KEY", "not-the-key")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        !output.status.success(),
        "a failing channel fails the check"
    );
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{stdout}"))
            .to_owned()
    };
    assert!(
        line("good").contains("yes") && line("good").contains(" ok "),
        "{stdout}"
    );
    assert!(
        line("wrong-key").contains("fail") && line("wrong-key").contains("401"),
        "{stdout}"
    );
    assert!(line("down").contains(" no "), "{stdout}");
    assert!(
        !stdout.contains(crate::fake_ark::FAKE_KEY) && !stdout.contains("not-the-key"),
        "keys never printed"
    );
}
