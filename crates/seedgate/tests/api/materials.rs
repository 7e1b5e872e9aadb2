//! The material library: assets imported from a URL, checked against the upstream's input
//! rules, kept in the asset store and used in generation requests as `asset://<id>`,
//! `material_asset_id` and `material_asset_ids`, on both surfaces.

use std::time::{Duration, Instant};

use seedgate::ids::MaterialId;
use seedgate::store::materials::{AssetType, LibraryType, MaterialStatus, NewAsset};
use serde_json::{json, Value};

use crate::helpers::{wait_terminal, MediaServer, TestApp};

const WAIT: Duration = Duration::from_secs(60);

async fn import(app: &TestApp, body: Value) -> (u16, Value) {
    app.call("POST", "/v1/videos/assets", &app.key, Some(&body))
        .await
}

async fn active_image(app: &TestApp, media: &MediaServer) -> String {
    let (status, asset) = import(
        app,
        json!({"asset_url": media.url("start.png"), "asset_name": "Front"}),
    )
    .await;
    assert_eq!(status, 201, "{asset}");
    assert_eq!(
        (asset["status"].as_str(), asset["ready"].as_bool()),
        (Some("ACTIVE"), Some(true))
    );
    asset["id"].as_str().unwrap().to_owned()
}

async fn completes(app: &TestApp, body: Value) -> Value {
    let (status, task) = app.create(&body).await;
    assert_eq!(status, 200, "{task}");
    let id = task["id"].as_str().unwrap();
    let done = wait_terminal(&app.client, &app.address, &app.key, id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    done
}

#[tokio::test]
async fn an_imported_image_drives_generation_on_both_surfaces() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let id = active_image(&app, &media).await;
    assert!(id.starts_with("asset-"));
    let stored = app.blobs.size(&format!("materials/{id}")).await.unwrap();
    assert!(
        stored.is_some_and(|size| size > 0),
        "the bytes are in the asset store"
    );

    let (status, listed) = app
        .call("GET", "/v1/videos/assets?status=ACTIVE", &app.key, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["assets"][0]["id"], id.as_str());
    let (status, one) = app
        .call("GET", &format!("/v1/videos/assets/{id}"), &app.key, None)
        .await;
    assert_eq!((status, one["asset_name"].as_str()), (200, Some("Front")));

    // The material as the first frame, as a reference, and through Ark's shorthand.
    let reference = format!("asset://{id}");
    completes(
        &app,
        json!({"model": "seedance-2.0-fast", "operation": "image-to-video",
        "prompt": "the kite lifts", "image_url": reference, "resolution": "480p", "duration": 4}),
    )
    .await;
    completes(
        &app,
        json!({"model": "seedance-2.0-fast", "prompt": "in this style",
        "material_asset_id": id, "resolution": "480p", "duration": 4}),
    )
    .await;
    let response = app
        .client
        .post(format!("{}/api/v3/contents/generations/tasks", app.address))
        .bearer_auth(&app.key)
        .json(&json!({"model": "seedance-2.0-fast", "material_asset_id": id,
            "content": [{"type": "text", "text": "the kite lifts"}], "resolution": "480p", "duration": 4}))
        .send()
        .await
        .unwrap();
    let (status, created) = crate::helpers::decode(response).await;
    assert_eq!(status, 200, "{created}");
    let ours = created["id"]
        .as_str()
        .unwrap()
        .replacen("cgt-", "vtask_", 1);
    let done = wait_terminal(&app.client, &app.address, &app.key, &ours, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["operation"], "image-to-video");
}

#[tokio::test]
async fn a_source_that_breaks_a_rule_fails_with_its_reason() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    for (body, reason) in [
        (json!({"asset_url": media.url("tiny.png")}), "300"),
        (json!({"asset_url": media.url("missing.png")}), "fetched"),
        (
            json!({"asset_url": media.url("clip.mp4"), "asset_type": "Image"}),
            "JPEG, PNG or WebP",
        ),
        (
            json!({"asset_url": media.url("start.png"), "asset_type": "Video"}),
            "video",
        ),
    ] {
        let (status, error) = import(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["code"], "seedance_material_source_invalid");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(reason),
            "{error}"
        );
        let asset = error["error"]["asset_id"].as_str().unwrap();
        let (_, failed) = app
            .call("GET", &format!("/v1/videos/assets/{asset}"), &app.key, None)
            .await;
        assert_eq!(
            failed["status"], "FAILED",
            "never left PROCESSING: {failed}"
        );
        assert_eq!(failed["error_message"], error["error"]["message"]);
    }
    // Audio and video sources held to their own rules pass.
    for (file, kind) in [("clip.mp4", "Video"), ("tone.wav", "Audio")] {
        let (status, asset) = import(
            &app,
            json!({"asset_url": media.url(file), "asset_type": kind}),
        )
        .await;
        assert_eq!(
            (status, asset["status"].as_str()),
            (201, Some("ACTIVE")),
            "{asset}"
        );
    }
    let (status, refused) = import(
        &app,
        json!({"asset_url": media.url("start.png"),
        "library_type": "liveness_face"}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("liveness_face_unsupported"))
    );
    let (status, forbidden) =
        import(&app, json!({"asset_url": "http://169.254.169.254/latest"})).await;
    assert_eq!(
        (status, forbidden["error"]["code"].as_str()),
        (400, Some("input_url_forbidden"))
    );

    // A re-sourced asset is processed again; a bad new source is 422.
    let id = active_image(&app, &media).await;
    let path = format!("/v1/videos/assets/{id}");
    let (status, error) = app
        .call(
            "PUT",
            &path,
            &app.key,
            Some(&json!({"asset_url": media.url("tiny.png")})),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("seedance_material_source_invalid"))
    );
    let (status, again) = app
        .call(
            "PUT",
            &path,
            &app.key,
            Some(&json!({"asset_url": media.url("end.png"), "metadata": {"v": 2}})),
        )
        .await;
    assert_eq!(
        (status, again["status"].as_str()),
        (200, Some("ACTIVE")),
        "{again}"
    );
    assert_eq!(again["metadata"], json!({"v": 2}));
}

#[tokio::test]
async fn only_an_active_image_of_ones_own_library_generates() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let (other_key, other_account) = app.new_key(100_000_000).await;
    let id = active_image(&app, &media).await;
    let (_, clip) = import(
        &app,
        json!({"asset_url": media.url("clip.mp4"), "asset_type": "Video"}),
    )
    .await;
    let clip = clip["id"].as_str().unwrap().to_owned();
    let i2v = |asset: &str| {
        json!({"model": "seedance-2.0-fast", "image_url": format!("asset://{asset}"),
        "prompt": "p", "resolution": "480p", "duration": 4})
    };

    // Another organization's asset is no asset at all.
    let (status, error) = app.create_with_key(&other_key, &i2v(&id)).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("asset_not_found"))
    );
    let (status, error) = app.create(&i2v(&clip)).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("asset_not_an_image"))
    );
    let (status, error) = app.create(&i2v("asset-20260101000000-zzzzz")).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("asset_not_found"))
    );

    // Still processing: 409, retry later.
    let pending = app
        .store
        .create_asset(&NewAsset {
            organization_id: &app
                .store
                .account(&app.account_id)
                .await
                .unwrap()
                .unwrap()
                .organization_id,
            project_name: "default",
            group_id: None,
            library_type: LibraryType::AigcAvatar,
            asset_name: None,
            asset_type: AssetType::Image,
            source_url: &media.url("end.png"),
            metadata: None,
            lease_ms: 600_000,
        })
        .await
        .unwrap();
    let (status, error) = app.create(&i2v(pending.id.as_str())).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (409, Some("seedance_material_preparing"))
    );

    // Deleted: gone for new tasks, and its file goes with it.
    let (status, deleted) = app
        .call("DELETE", &format!("/v1/videos/assets/{id}"), &app.key, None)
        .await;
    assert_eq!((status, deleted["deleted"].as_bool()), (200, Some(true)));
    assert!(app
        .blobs
        .size(&format!("materials/{id}"))
        .await
        .unwrap()
        .is_none());
    let (status, error) = app.create(&i2v(&id)).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("asset_not_found"))
    );
    assert_eq!(app.store.count_tasks(&other_account).await.unwrap(), 0);
}

#[tokio::test]
async fn an_asset_whose_processor_died_is_taken_over() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let organization = app
        .store
        .account(&app.account_id)
        .await
        .unwrap()
        .unwrap()
        .organization_id;
    // Created, then its processor died before it could start: the lease has already run out.
    let orphan = app
        .store
        .create_asset(&NewAsset {
            organization_id: &organization,
            project_name: "default",
            group_id: None,
            library_type: LibraryType::AigcAvatar,
            asset_name: None,
            asset_type: AssetType::Image,
            source_url: &media.url("start.png"),
            metadata: None,
            lease_ms: -1,
        })
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let asset = app.store.material(&orphan.id).await.unwrap().unwrap();
        if asset.status != MaterialStatus::Processing {
            assert_eq!(asset.status, MaterialStatus::Active);
            break;
        }
        assert!(started.elapsed() < WAIT, "never taken over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app
        .blobs
        .size(&format!("materials/{}", orphan.id))
        .await
        .unwrap()
        .is_some());
    assert!(app
        .store
        .material(&MaterialId::new("asset-\0"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn groups_hold_assets_and_take_them_when_deleted() {
    let app = TestApp::spawn().await;
    let media = MediaServer::start().await;
    let (status, group) = app
        .call("POST", "/v1/videos/assets/groups", &app.key,
            Some(&json!({"group_name": "Product shots", "description": "summer", "project_name": "ads"})))
        .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    assert!(group_id.starts_with("group-"));
    let (status, asset) = import(
        &app,
        json!({"asset_url": media.url("start.png"),
        "group_id": group_id, "project_name": "ads"}),
    )
    .await;
    assert_eq!(status, 201, "{asset}");
    let asset_id = asset["id"].as_str().unwrap().to_owned();
    // Projects are scopes: the default project does not see it.
    let (status, _) = app
        .call(
            "GET",
            &format!("/v1/videos/assets/{asset_id}"),
            &app.key,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, listed) = app
        .call(
            "GET",
            &format!("/v1/videos/assets?project_name=ads&group_id={group_id}"),
            &app.key,
            None,
        )
        .await;
    assert_eq!(listed["assets"].as_array().unwrap().len(), 1);
    let (status, wrong_project) = import(
        &app,
        json!({"asset_url": media.url("end.png"), "group_id": group_id}),
    )
    .await;
    assert_eq!(
        (status, wrong_project["error"]["code"].as_str()),
        (400, Some("material_group_not_found"))
    );

    let group_path = format!("/v1/videos/assets/groups/{group_id}?project_name=ads");
    let (status, renamed) = app
        .call(
            "PUT",
            &format!("/v1/videos/assets/groups/{group_id}"),
            &app.key,
            Some(&json!({"group_name": "Approved", "project_name": "ads"})),
        )
        .await;
    assert_eq!(
        (status, renamed["group_name"].as_str()),
        (200, Some("Approved"))
    );
    let (status, deleted) = app.call("DELETE", &group_path, &app.key, None).await;
    assert_eq!((status, deleted["deleted"].as_bool()), (200, Some(true)));
    let (_, gone) = app
        .call(
            "GET",
            &format!("/v1/videos/assets/{asset_id}?project_name=ads"),
            &app.key,
            None,
        )
        .await;
    assert_eq!(gone["status"], "DELETED");
    assert!(app
        .blobs
        .size(&format!("materials/{asset_id}"))
        .await
        .unwrap()
        .is_none());
    let (status, conflict) = app
        .call(
            "PUT",
            &format!("/v1/videos/assets/groups/{group_id}"),
            &app.key,
            Some(&json!({"group_name": "x", "project_name": "ads"})),
        )
        .await;
    assert_eq!(
        (status, conflict["error"]["code"].as_str()),
        (409, Some("material_group_deleted"))
    );
    let (_, groups) = app
        .call(
            "GET",
            "/v1/videos/assets/groups?project_name=ads&status=DELETED",
            &app.key,
            None,
        )
        .await;
    assert_eq!(groups["groups"][0]["id"], group_id.as_str());
    let (status, error) = app
        .call(
            "POST",
            "/v1/videos/assets/groups",
            &app.key,
            Some(&json!({"library_type": "liveness_face"})),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("liveness_face_unsupported"))
    );
}
