//! Models and Pricing API.

use crate::helpers::TestApp;

#[tokio::test]
async fn models_list_the_three_seedance_models() {
    let app = TestApp::spawn_without_workers().await;
    let (status, models) = app.get_path("/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["seedance-2.0", "seedance-2.0-fast", "seedance-2.0-mini"]
    );

    let (status, fast) = app.get_path("/v1/models/seedance-2.0-fast").await;
    assert_eq!(status, 200);
    assert_eq!(fast["resolutions"], serde_json::json!(["480p", "720p"]));
    assert_eq!(fast["operations"].as_array().unwrap().len(), 6);
    let (_, mini) = app.get_path("/v1/models/seedance-2.0-mini").await;
    assert_eq!(mini["reference_limits"]["images"], 9);

    let (status, missing) = app.get_path("/v1/models/seedance-1.0").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn pricing_converts_cny_at_6_8() {
    let app = TestApp::spawn_without_workers().await;
    let (status, pricing) = app.get_path("/v1/pricing").await;
    assert_eq!(status, 200);
    let rows = pricing["data"].as_array().unwrap();
    // 2.0: 4 resolutions, fast and mini: 2 each; each with and without video input.
    assert_eq!(rows.len(), 16);
    let row = rows
        .iter()
        .find(|r| {
            r["model"] == "seedance-2.0" && r["resolution"] == "720p" && r["video_input"] == false
        })
        .unwrap();
    assert_eq!(row["cny_per_million_tokens"], "46");
    assert_eq!(row["usd_per_million_tokens"], "6.764706");
    let k4 = rows
        .iter()
        .find(|r| r["model"] == "seedance-2.0" && r["resolution"] == "4k")
        .unwrap();
    assert_eq!(k4["provisional"], true);
}
