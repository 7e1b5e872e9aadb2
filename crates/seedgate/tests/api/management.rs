//! The management API: an organization's balance, its keys with caps, allow-lists, expiry and
//! status, their usage reconciled with the ledger, and isolation between organizations. Every
//! answer on these paths is checked against the platform's schemas by `helpers::decode`.

use std::time::Duration;

use rust_decimal::Decimal;
use seedgate::ids::{AccountId, OrgId, TaskId};
use serde_json::{json, Value};

use crate::fake_ark::{Ending, FakeArk};
use crate::helpers::{wait_terminal, TestApp};
use crate::upstream::app_with_channel;

const WAIT: Duration = Duration::from_secs(60);

struct Org {
    id: OrgId,
    token: String,
}

async fn org(app: &TestApp, balance_usd_micros: i64) -> Org {
    let created = app
        .store
        .create_organization("acme", balance_usd_micros)
        .await
        .unwrap();
    Org {
        id: created.organization.id,
        token: created.management_token,
    }
}

/// A key made through the API: its id and secret.
async fn api_key(app: &TestApp, org: &Org, body: Value) -> (String, String) {
    let (status, key) = app
        .call("POST", "/v1/management/api-keys", &org.token, Some(&body))
        .await;
    assert_eq!(status, 201, "{key}");
    (
        key["id"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    )
}

fn t2v(model: &str) -> Value {
    json!({"model": model, "operation": "text-to-video", "prompt": "a red kite",
        "resolution": "480p", "duration": 4, "aspect_ratio": "16:9"})
}

fn decimal(value: &Value) -> Decimal {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_organization_manages_its_keys_and_their_limits() {
    let app = TestApp::spawn().await;
    let acme = org(&app, 50_000_000).await;

    let (status, balance) = app
        .call("GET", "/v1/management/balance", &acme.token, None)
        .await;
    assert_eq!(status, 200, "{balance}");
    assert_eq!(balance["organization_id"], acme.id.as_str());
    assert_eq!(balance["balance_decimal"], "50.000000");
    assert_eq!(balance["total_recharge_decimal"], "50.000000");
    assert_eq!(balance["balance"], 50.0);

    let (status, created) = app
        .call(
            "POST",
            "/v1/management/api-keys",
            &acme.token,
            Some(
                &json!({"name": " ci ", "limitAmount": 0.25, "models": ["seedance-2.0-fast"],
                "expiresAt": "2099-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    assert!(secret.starts_with("sg_live_"));
    assert_eq!(created["name"], "ci");
    assert_eq!(created["limit_amount_decimal"], "0.250000");
    assert_eq!(created["limit_amount"], 0.25);
    assert_eq!(created["status"], "active");
    assert_eq!(created["expires_at"], "2099-01-01T00:00:00.000Z");
    assert_eq!(created["last_used_at"], Value::Null);

    // The secret is shown once: listings carry only its prefix, and the store only its hash.
    let (status, list) = app
        .call("GET", "/v1/management/api-keys", &acme.token, None)
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["pagination"]["total"], 1);
    assert!(!list.to_string().contains(&secret));
    assert_eq!(list["data"][0]["key_prefix"], &secret[..12]);

    // The allow-list and the cap hold before anything is stored.
    let (status, refused) = app.create_with_key(&secret, &t2v("seedance-2.0")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("model_not_allowed"))
    );
    let (status, task) = app
        .create_with_key(&secret, &t2v("seedance-2.0-fast"))
        .await;
    assert_eq!(status, 200, "{task}");
    let reserved: Decimal = task["estimated_cost"]["amount"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, over) = app
        .create_with_key(&secret, &t2v("seedance-2.0-fast"))
        .await;
    assert!(
        reserved * Decimal::from(2) > Decimal::new(25, 2),
        "the cap fits one task"
    );
    assert_eq!(status, 402, "{over}");
    assert_eq!(over["error"]["code"], "key_limit_exceeded");
    assert_eq!(over["error"]["type"], "quota_exceeded");
    let key_id = AccountId::new(&id);
    assert_eq!(app.store.count_tasks(&key_id).await.unwrap(), 1);

    // The key's last use is recorded, off the request path.
    let started = std::time::Instant::now();
    loop {
        let account = app.store.account(&key_id).await.unwrap().unwrap();
        if account.last_used_at_ms.is_some() {
            break;
        }
        assert!(started.elapsed() < WAIT, "last use never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Switched off, the key is refused; on again, it works; revoked, it is gone for good.
    let path = format!("/v1/management/api-keys/{id}");
    for (body, code) in [
        (json!({"status": "inactive"}), 401),
        (
            json!({"status": "active", "limitAmount": null, "models": []}),
            200,
        ),
    ] {
        let (status, key) = app.call("PATCH", &path, &acme.token, Some(&body)).await;
        assert_eq!(status, 200, "{key}");
        let (status, _) = app.create_with_key(&secret, &t2v("seedance-2.0")).await;
        assert_eq!(status, code, "{body}");
    }
    let (status, key) = app
        .call(
            "PATCH",
            &path,
            &acme.token,
            Some(&json!({"status": "revoked"})),
        )
        .await;
    assert_eq!((status, key["status"].as_str()), (200, Some("revoked")));
    let (status, _) = app.create_with_key(&secret, &t2v("seedance-2.0")).await;
    assert_eq!(status, 401);
    let (status, again) = app
        .call(
            "PATCH",
            &path,
            &acme.token,
            Some(&json!({"status": "active"})),
        )
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("api_key_revoked"))
    );

    // Bad bodies are refused with their code and change nothing.
    for (body, code) in [
        (json!({}), "empty_update"),
        (
            json!({"limitCurrency": "CNY", "limitAmount": 5}),
            "currency_retired",
        ),
        (json!({"name": ""}), "invalid_name"),
    ] {
        let (status, error) = app.call("PATCH", &path, &acme.token, Some(&body)).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let (status, error) = app
        .call(
            "POST",
            "/v1/management/api-keys",
            &acme.token,
            Some(&json!({"limitAmount": -1})),
        )
        .await;
    assert_eq!(
        (status, error["error"]["param"].as_str()),
        (400, Some("limitAmount"))
    );
    assert_eq!(
        app.store
            .organization_keys(&acme.id, 0, 10)
            .await
            .unwrap()
            .1,
        1
    );
}

#[tokio::test]
async fn an_expired_key_is_refused_with_its_own_code() {
    let app = TestApp::spawn().await;
    let acme = org(&app, 10_000_000).await;
    let (id, secret) = api_key(&app, &acme, json!({"name": "short"})).await;
    // Expiry is checked at each request; set it in the past behind the API's back.
    let update = seedgate::store::KeyUpdate {
        expires_at_ms: Some(Some(1)),
        ..Default::default()
    };
    app.store
        .update_key(&acme.id, &AccountId::new(&id), &update)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (status, error) = app.create_with_key(&secret, &t2v("seedance-2.0")).await;
    assert_eq!(status, 401, "{error}");
    assert_eq!(error["error"]["type"], "expired_api_key");
}

#[tokio::test]
async fn usage_and_billing_equal_the_ledger_after_a_mixed_run() {
    let fake = FakeArk::start().await;
    let app = app_with_channel(&fake).await;
    let acme = org(&app, 100_000_000).await;
    let (id, secret) = api_key(&app, &acme, json!({"name": "mixed"})).await;
    let mut ids = Vec::new();
    for (model, ending) in [
        ("seedance-2.0-fast", Ending::Succeed),
        ("seedance-2.0", Ending::Succeed),
        ("seedance-2.0-fast", Ending::Succeed),
        ("seedance-2.0-fast", Ending::FailReview),
    ] {
        fake.set_ending(ending);
        let (status, task) = app.create_with_key(&secret, &t2v(model)).await;
        assert_eq!(status, 200, "{task}");
        let id = task["id"].as_str().unwrap().to_owned();
        wait_terminal(&app.client, &app.address, &secret, &id, WAIT).await;
        ids.push(id);
    }
    // Cancelled while still queued upstream.
    fake.set_ending(Ending::Succeed);
    fake.set_timing(Duration::from_secs(600), Duration::from_secs(1));
    let (_, task) = app
        .create_with_key(&secret, &t2v("seedance-2.0-fast"))
        .await;
    let cancelled = task["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    loop {
        let (status, _) = app.cancel_with_key(&secret, &cancelled).await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < WAIT, "never cancellable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ids.push(cancelled);

    let mut charged = 0i64;
    let mut states = Vec::new();
    for id in &ids {
        let task = app.store.task(&TaskId::new(id)).await.unwrap().unwrap();
        states.push(task.public_status().as_str());
        for (kind, amount) in app.store.ledger_entries_for_task(&task.id).await.unwrap() {
            if kind == "charge" {
                charged -= amount;
            }
        }
    }
    assert_eq!(
        states,
        ["completed", "completed", "completed", "failed", "failed"]
    );
    assert!(charged > 0);
    let charged = Decimal::new(charged, 6);

    let usage_path = format!("/v1/management/api-keys/{id}/usage?limit=2");
    let (status, usage) = app.call("GET", &usage_path, &acme.token, None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["pagination"]["total"], 3);
    assert_eq!(usage["pagination"]["totalPages"], 2);
    assert_eq!(decimal(&usage["summary"]["total_cost_decimal"]), charged);
    let mut items = usage["items"].as_array().unwrap().clone();
    let (_, page_two) = app
        .call("GET", &format!("{usage_path}&page=2"), &acme.token, None)
        .await;
    items.extend(page_two["items"].as_array().unwrap().iter().cloned());
    let item_sum: Decimal = items.iter().map(|i| decimal(&i["cost_decimal"])).sum();
    assert_eq!(item_sum, charged);
    let mut listed: Vec<&str> = items
        .iter()
        .map(|i| i["request_id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut completed: Vec<&str> = ids[..3].iter().map(String::as_str).collect();
    completed.sort_unstable();
    assert_eq!(listed, completed, "each completed task once, nothing else");

    let (status, billing) = app
        .call(
            "GET",
            &format!("/v1/management/api-keys/{id}/billing"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(status, 200, "{billing}");
    assert_eq!(decimal(&billing["summary"]["total_cost_decimal"]), charged);
    for breakdown in ["by_model", "daily_cost", "by_scene"] {
        let sum: Decimal = billing["breakdowns"][breakdown]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| decimal(&row["cost_decimal"]))
            .sum();
        assert_eq!(sum, charged, "{breakdown}");
    }
    assert_eq!(decimal(&billing["api_key"]["used_amount_decimal"]), charged);
    let (_, fast) = app
        .call(
            "GET",
            &format!("/v1/management/api-keys/{id}/billing?model=seedance-2.0-fast"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(fast["summary"]["total_requests"], 2);
    let (_, other_scene) = app
        .call(
            "GET",
            &format!("/v1/management/api-keys/{id}/usage?scene=chat"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(other_scene["summary"]["total_requests"], 0);
    let (status, bad) = app
        .call(
            "GET",
            &format!("/v1/management/api-keys/{id}/usage?startDate=yesterday"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_date"))
    );

    let (_, balance) = app
        .call("GET", "/v1/management/balance", &acme.token, None)
        .await;
    assert_eq!(decimal(&balance["total_used_decimal"]), charged);
    assert_eq!(
        decimal(&balance["balance_decimal"]),
        Decimal::from(100) - charged
    );
    assert_eq!(
        app.store.organization_ledger_sum(&acme.id).await.unwrap(),
        100_000_000 - i64::try_from(charged * Decimal::from(1_000_000)).unwrap()
    );
}

/// One request of the isolation matrix, and what its caller must get.
struct Case {
    method: &'static str,
    path: String,
    body: Option<Value>,
    status: u16,
    /// Strings the answer must not contain (the other organization's ids).
    hides: Vec<String>,
}

fn case(method: &'static str, path: String, status: u16) -> Case {
    Case {
        method,
        path,
        body: None,
        status,
        hides: Vec::new(),
    }
}

/// Every path × the wrong organization × both kinds of secret: another organization's keys,
/// usage, tasks, material assets and groups are 404 (or absent from listings) on every path; a
/// management token is 401 where an API key belongs, and an API key is 401 where a management
/// token belongs.
#[tokio::test]
async fn no_organization_sees_or_touches_another() {
    let app = TestApp::spawn().await;
    let media = crate::helpers::MediaServer::start().await;
    let (victim, intruder) = (org(&app, 10_000_000).await, org(&app, 10_000_000).await);
    let (victim_key, victim_secret) = api_key(&app, &victim, json!({"name": "v"})).await;
    let (_, intruder_secret) = api_key(&app, &intruder, json!({"name": "i"})).await;
    let (status, task) = app
        .create_with_key(&victim_secret, &t2v("seedance-2.0-fast"))
        .await;
    assert_eq!(status, 200, "{task}");
    let task = task["id"].as_str().unwrap().to_owned();
    let ark_task = task.replacen("vtask_", "cgt-", 1);
    let key_path = format!("/v1/management/api-keys/{victim_key}");
    let (status, group) = app
        .call(
            "POST",
            "/v1/videos/assets/groups",
            &victim_secret,
            Some(&json!({"group_name": "v"})),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let group = group["id"].as_str().unwrap().to_owned();
    let (status, asset) = app
        .call(
            "POST",
            "/v1/videos/assets",
            &victim_secret,
            Some(&json!({"asset_url": media.url("start.png"), "group_id": group})),
        )
        .await;
    assert_eq!(status, 201, "{asset}");
    let asset = asset["id"].as_str().unwrap().to_owned();
    let victims = vec![
        victim_key.clone(),
        task.clone(),
        ark_task.clone(),
        asset.clone(),
        group.clone(),
    ];
    let with_asset = json!({"model": "seedance-2.0-fast", "prompt": "p",
        "image_url": format!("asset://{asset}")});

    let management: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/management/balance".into(), None),
        ("GET", "/v1/management/api-keys".into(), None),
        (
            "POST",
            "/v1/management/api-keys".into(),
            Some(json!({"name": "x"})),
        ),
        (
            "PATCH",
            key_path.clone(),
            Some(json!({"status": "revoked"})),
        ),
        ("GET", format!("{key_path}/usage"), None),
        ("GET", format!("{key_path}/billing"), None),
    ];
    let tasks: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/tasks/{task}"), None),
        ("GET", format!("/v1/videos/generations/{task}"), None),
        ("DELETE", format!("/v1/tasks/{task}"), None),
        ("POST", format!("/v1/tasks/{task}/cancel"), None),
        (
            "GET",
            format!("/api/v3/contents/generations/tasks/{ark_task}"),
            None,
        ),
        (
            "DELETE",
            format!("/api/v3/contents/generations/tasks/{ark_task}"),
            None,
        ),
        ("GET", "/v1/tasks".into(), None),
        ("GET", "/api/v3/contents/generations/tasks".into(), None),
        (
            "POST",
            "/v1/videos/generations".into(),
            Some(t2v("seedance-2.0-fast")),
        ),
        (
            "POST",
            "/v1/videos/generations".into(),
            Some(with_asset.clone()),
        ),
        ("GET", format!("/v1/videos/assets/{asset}"), None),
        (
            "PUT",
            format!("/v1/videos/assets/{asset}"),
            Some(json!({"asset_name": "x"})),
        ),
        ("DELETE", format!("/v1/videos/assets/{asset}"), None),
        ("GET", "/v1/videos/assets".into(), None),
        ("GET", format!("/v1/videos/assets?group_id={group}"), None),
        (
            "POST",
            "/v1/videos/assets".into(),
            Some(json!({"asset_url": media.url("end.png"), "group_id": group})),
        ),
        ("GET", format!("/v1/videos/assets/groups/{group}"), None),
        (
            "PUT",
            format!("/v1/videos/assets/groups/{group}"),
            Some(json!({"group_name": "x"})),
        ),
        ("DELETE", format!("/v1/videos/assets/groups/{group}"), None),
        ("GET", "/v1/videos/assets/groups".into(), None),
    ];

    let mut matrix: Vec<(&str, &str, Case)> = Vec::new();
    for (method, path, body) in &management {
        // The intruder's own token: its own balance and listings, 404 for the victim's key.
        let targeted = path.contains(&victim_key);
        let status = match (*method, targeted) {
            (_, true) => 404,
            ("POST", false) => 201,
            _ => 200,
        };
        matrix.push((
            "intruder's management token",
            &intruder.token,
            Case {
                body: body.clone(),
                hides: victims.clone(),
                ..case(method, path.clone(), status)
            },
        ));
        for (who, secret) in [
            ("victim's API key", &victim_secret),
            ("intruder's API key", &intruder_secret),
        ] {
            matrix.push((
                who,
                secret,
                Case {
                    body: body.clone(),
                    ..case(method, path.clone(), 401)
                },
            ));
        }
    }
    for (method, path, body) in &tasks {
        let names_a_victim = victims.iter().any(|id| path.contains(id.as_str()));
        let status = match (*method, path.as_str()) {
            // Another organization's material is no material: the request is invalid.
            ("POST", "/v1/videos/generations") if body.as_ref() == Some(&with_asset) => 400,
            ("POST", "/v1/videos/generations") => 200,
            // Creating in another organization's group: no such group.
            ("POST", "/v1/videos/assets") => 400,
            // A listing filtered by another organization's group lists nothing.
            ("GET", listing) if listing.starts_with("/v1/videos/assets?") => 200,
            _ if names_a_victim => 404,
            _ => 200,
        };
        matrix.push((
            "intruder's API key",
            &intruder_secret,
            Case {
                body: body.clone(),
                hides: victims.clone(),
                ..case(method, path.clone(), status)
            },
        ));
        for (who, secret) in [
            ("victim's management token", &victim.token),
            ("intruder's management token", &intruder.token),
        ] {
            matrix.push((
                who,
                secret,
                Case {
                    body: body.clone(),
                    ..case(method, path.clone(), 401)
                },
            ));
        }
    }
    assert!(matrix.len() >= 70);
    for (who, secret, case) in &matrix {
        let (status, answer) = app
            .call(case.method, &case.path, secret, case.body.as_ref())
            .await;
        assert_eq!(
            status, case.status,
            "{} {} with the {who}: {answer}",
            case.method, case.path
        );
        let text = answer.to_string();
        let sent = format!(
            "{}{}",
            case.path,
            case.body.as_ref().map(Value::to_string).unwrap_or_default()
        );
        // An answer may repeat what its caller sent; nothing else of the victim's.
        for hidden in case.hides.iter().filter(|id| !sent.contains(id.as_str())) {
            assert!(
                !text.contains(hidden.as_str()),
                "{} {} with the {who} shows {hidden}: {answer}",
                case.method,
                case.path
            );
        }
    }

    // The victim's key and task are as they were.
    let key = app
        .store
        .organization_key(&victim.id, &AccountId::new(&victim_key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.status, seedgate::store::KeyStatus::Active);
    let (status, own) = app.task_with_key(&victim_secret, &task).await;
    assert_eq!(status, 200);
    assert_ne!(
        own["status"], "failed",
        "the intruder's cancels reached it: {own}"
    );
    assert_eq!(
        app.store
            .organization_keys(&victim.id, 0, 10)
            .await
            .unwrap()
            .1,
        1
    );
}
