//! `/v1/account` and `/v1/account/usage`: the calling key's money and its spending per day and
//! model, as the console shows them, equal to the ledger to the micro-dollar and to nobody
//! else's.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::TestApp;

fn micros(decimal: &str) -> i64 {
    let (whole, fraction) = decimal.split_once('.').unwrap_or((decimal, ""));
    let fraction = format!("{fraction:0<6}");
    whole.parse::<i64>().unwrap() * 1_000_000 + fraction[..6].parse::<i64>().unwrap()
}

#[tokio::test]
async fn usage_is_the_ledger_by_day_and_model() {
    let app = TestApp::spawn().await;
    let mut charged: Vec<(String, i64)> = Vec::new();
    for (model, prompt) in [
        ("seedance-2.0-fast", "a kite"),
        ("seedance-2.0-mini", "a boat"),
        ("seedance-2.0-fast", "a gull"),
    ] {
        let body = json!({"model": model, "prompt": prompt, "resolution": "480p", "duration": 4});
        let (status, task) = app.create(&body).await;
        assert_eq!(status, 200, "{task}");
        let done = app
            .wait_terminal(task["id"].as_str().unwrap(), Duration::from_secs(120))
            .await;
        assert_eq!(done["status"], "completed", "{done}");
        charged.push((
            model.to_owned(),
            micros(done["cost"]["amount"].as_str().unwrap()),
        ));
    }
    let (status, usage) = app.get_path("/v1/account/usage").await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["object"], "account_usage");
    assert_eq!(usage["days"], 30);
    let today = &today_utc();
    let daily = usage["daily"].as_array().unwrap();
    let mut models: Vec<(String, i64, i64)> = daily
        .iter()
        .map(|d| {
            assert_eq!(&d["date"], today, "{d}");
            (
                d["model"].as_str().unwrap().to_owned(),
                d["requests"].as_i64().unwrap(),
                micros(d["cost_decimal"].as_str().unwrap()),
            )
        })
        .collect();
    models.sort();
    let sum = |model: &str| -> (i64, i64) {
        let of_model = charged.iter().filter(|(m, _)| m == model);
        (
            of_model.clone().count() as i64,
            of_model.map(|(_, c)| c).sum(),
        )
    };
    let (fast_tasks, fast_cost) = sum("seedance-2.0-fast");
    let (mini_tasks, mini_cost) = sum("seedance-2.0-mini");
    assert_eq!(
        models,
        vec![
            ("seedance-2.0-fast".to_owned(), fast_tasks, fast_cost),
            ("seedance-2.0-mini".to_owned(), mini_tasks, mini_cost),
        ]
    );
    let total: i64 = charged.iter().map(|(_, c)| c).sum();
    assert_eq!(micros(usage["total_cost_decimal"].as_str().unwrap()), total);
    assert_eq!(usage["by_model"].as_array().unwrap().len(), 2);

    // The account: what is left of the key's money after exactly these charges.
    let (status, account) = app.get_path("/v1/account").await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["object"], "account");
    assert_eq!(account["id"], app.account_id.to_string());
    assert_eq!(account["mode"], "test");
    let balance = app.balance(&app.account_id).await;
    assert_eq!(
        micros(account["balance_decimal"].as_str().unwrap()),
        balance
    );
    assert_eq!(
        micros(account["used_amount_decimal"].as_str().unwrap()),
        total
    );

    // Another key of the server sees none of it.
    let (other, _) = app.new_key(5_000_000).await;
    let (_, theirs) = app
        .get_path_with_key(&other, "/v1/account/usage?days=90")
        .await;
    assert_eq!(theirs["daily"], json!([]));
    assert_eq!(theirs["total_cost_decimal"], "0.000000");
}

#[tokio::test]
async fn a_bad_window_is_refused() {
    let app = TestApp::spawn_without_workers().await;
    for query in ["days=0", "days=91", "days=-3", "days=soon"] {
        let (status, body) = app.get_path(&format!("/v1/account/usage?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(
            code == "invalid_days" || code == "invalid_query",
            "{query}: {body}"
        );
    }
    let (status, body): (u16, Value) = app.get_path_with_key("sg_test_nobody", "/v1/account").await;
    assert_eq!(status, 401, "{body}");
}

/// Today's UTC date, `YYYY-MM-DD`.
fn today_utc() -> Value {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    Value::String(seedgate_contract::date::rfc3339(days as i64 * 86_400)[..10].to_owned())
}
