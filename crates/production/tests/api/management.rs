//! The management API: test-send, message search, resend, log, purge, items, metrics,
//! OpenAPI and the token.

use interop::store::MessageRow;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp};

fn ids(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

fn formation_test(id: i64) -> Value {
    json!({"type": "FormationRequest", "body": {"formation": {"id": id, "nom": "Test", "salle": "T"}}})
}

#[actix_rt::test]
async fn test_send_reaches_the_item_and_refuses_what_it_cannot_send() {
    let app = spawn_app().await;
    let r = app
        .post_json("/api/items/Router/test", formation_test(42))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["reply"]["type"], "FormationResponse");
    assert_eq!(r.json["reply"]["body"]["id"], 42);
    let sid = r.json["session_id"].as_i64().expect("session_id");
    let trace = app.get(&format!("/api/sessions/{sid}/trace")).await;
    let messages = trace.json["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6, "{}", trace.text);
    assert_eq!(messages[0]["source"], "TestingService");
    assert_eq!(messages[0]["body"]["formation"]["id"], 42);

    let cases = [
        (
            "/api/items/Router/test",
            json!({"type": "NoSuchType", "body": {}}),
            400,
        ),
        (
            "/api/items/Router/test",
            json!({"type": "FormationRequest", "body": {"formation": {"id": 1}}}),
            422,
        ),
        (
            "/api/items/Router/test",
            json!({"type": "TrainingGetRequest", "body": {"id": 1}}),
            422,
        ),
        ("/api/items/RestService/test", formation_test(1), 422),
        ("/api/items/Nobody/test", formation_test(1), 404),
        ("/api/items/Router/test", json!({"body": {}}), 400),
    ];
    for (path, body, status) in cases {
        let r = app.post_json(path, body.clone()).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.text);
        assert!(!r.error().is_empty(), "{}", r.text);
    }
    app.post("/api/items/FileOperation/disable").await;
    let r = app
        .post_json("/api/items/FileOperation/test", formation_test(1))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    app.stop().await;

    let app = spawn_app_with(Options {
        testing_enabled: false,
        ..Options::default()
    })
    .await;
    let r = app
        .post_json("/api/items/Router/test", formation_test(1))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error().contains("testing_enabled"), "{}", r.text);
    app.stop().await;
}

#[actix_rt::test]
async fn message_search_filters_and_pages() {
    let app = spawn_app().await;
    let mut sessions = Vec::new();
    for id in 1..=5 {
        sessions.push(app.create(id, "n", "s").await);
    }
    let r = app.get("/api/messages?target=IrisOperation").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found = r.json["messages"].as_array().unwrap();
    assert_eq!(found.len(), 5);
    assert!(found
        .iter()
        .all(|m| m["target"] == "IrisOperation" && m["kind"] == "request"));
    assert_eq!(r.json["next_before"], Value::Null);

    let r = app
        .get(&format!("/api/messages?session={}", sessions[2]))
        .await;
    assert_eq!(ids(&r.json).len(), 6);
    let r = app
        .get("/api/messages?source=RestService&type=FormationRequest&status=completed")
        .await;
    assert_eq!(ids(&r.json).len(), 5);
    let r = app.get("/api/messages?status=error&source=&target=").await;
    assert_eq!(ids(&r.json).len(), 0, "{}", r.text);

    // Pages of 2 over the 5 FormationStored replies, newest first, no overlap.
    let mut all = Vec::new();
    let mut before: Option<i64> = None;
    for _ in 0..5 {
        let path = match before {
            Some(b) => format!("/api/messages?type=FormationStored&limit=2&before={b}"),
            None => "/api/messages?type=FormationStored&limit=2".to_string(),
        };
        let page = app.get(&path).await;
        let page_ids = ids(&page.json);
        all.extend(page_ids.iter().copied());
        before = page.json["next_before"].as_i64();
        if let Some(b) = before {
            assert_eq!(Some(&b), page_ids.last());
        } else {
            break;
        }
    }
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");

    let header_keys = [
        "id",
        "session_id",
        "parent_id",
        "source",
        "target",
        "type",
        "kind",
        "status",
        "is_error",
        "error",
        "created",
        "processed",
    ];
    let one = app.get(&format!("/api/messages/{}", all[0])).await;
    assert_eq!(one.status, 200);
    for key in header_keys {
        assert!(one.json.get(key).is_some(), "{key} missing: {}", one.text);
    }
    assert_eq!(one.json["type"], "FormationStored");
    assert!(one.json["body"].is_object(), "{}", one.text);
    assert_eq!(app.get("/api/messages/999999").await.status, 404);

    for bad in ["limit=0", "session=abc", "status=bogus", "before=x"] {
        let r = app.get(&format!("/api/messages?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(!r.error().is_empty());
    }
    assert_eq!(app.get("/api/sessions/999999/trace").await.status, 404);
    app.stop().await;
}

#[actix_rt::test]
async fn resend_sends_a_stored_request_again_as_a_new_session() {
    let app = spawn_app().await;
    let sid = app.create(7, "Resent", "R").await;
    let first = app
        .get(&format!("/api/messages?session={sid}&source=RestService"))
        .await;
    let original = ids(&first.json)[0];
    let r = app.post(&format!("/api/messages/{original}/resend")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["original_id"], original);
    assert_eq!(r.json["reply"]["type"], "FormationResponse");
    let new_sid = r.json["session_id"].as_i64().unwrap();
    assert_ne!(new_sid, sid);
    assert!(r.json["id"].as_i64().unwrap() > original);
    let trace = app.get(&format!("/api/sessions/{new_sid}/trace")).await;
    assert_eq!(trace.json["messages"][0]["source"], "Resend");
    assert_eq!(trace.json["messages"][0]["target"], "Router");
    let events = trace.json["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["text"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("resend of message {original}"))),
        "{}",
        trace.text
    );
    let file = crate::helpers::lines(&app.out_dir().join("formation.txt"));
    assert_eq!(file, ["7 : R : Resent", "7 : R : Resent"]);

    let reply_id = trace.json["messages"][2]["id"].as_i64().unwrap();
    assert_eq!(trace.json["messages"][2]["kind"], "reply");
    let r = app.post(&format!("/api/messages/{reply_id}/resend")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(app.post("/api/messages/999999/resend").await.status, 404);
    app.stop().await;
}

#[actix_rt::test]
async fn log_lists_events_newest_first_with_filters() {
    let app = spawn_app().await;
    app.post("/api/items/Router/restart").await;
    let r = app.get("/api/log?limit=5").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = r.json["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.len() <= 5);
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    for key in ["id", "time", "level", "item", "session_id", "text"] {
        assert!(events[0].get(key).is_some(), "{key}");
    }
    let r = app.get("/api/log?item=Router").await;
    let events = r.json["events"].as_array().unwrap();
    assert!(events.len() >= 2, "{}", r.text);
    assert!(events.iter().all(|e| e["item"] == "Router"));
    let r = app.get("/api/log?level=INFO").await;
    assert!(r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["level"] == "info"));
    assert_eq!(app.get("/api/log?level=loud").await.status, 400);
    assert_eq!(app.get("/api/log?limit=-1").await.status, 400);
    app.stop().await;
}

fn old_row(app: &TestApp, status: &str) -> MessageRow {
    let id = app.production.store().next_id();
    MessageRow {
        id,
        session_id: id,
        parent_id: None,
        source: "Old".into(),
        target: "Nobody".into(),
        type_name: "FormationRequest".into(),
        kind: "request".into(),
        status: status.into(),
        is_error: false,
        error_text: None,
        created: "2000-01-01T00:00:00.000000Z".into(),
        processed: None,
        body: "{}".into(),
        session_key: None,
    }
}

#[actix_rt::test]
async fn purge_deletes_old_finished_messages_and_keeps_queued_ones() {
    let app = spawn_app().await;
    app.create(1, "n", "s").await;
    let queued = old_row(&app, "queued");
    let completed = old_row(&app, "completed");
    let store = app.production.store();
    store.insert(queued.clone()).await.unwrap();
    store.insert(completed.clone()).await.unwrap();

    let r = app
        .post_json("/api/purge", json!({"older_than_days": 365}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["deleted"], 1);
    assert_eq!(
        app.get(&format!("/api/messages/{}", completed.id))
            .await
            .status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/messages/{}", queued.id))
            .await
            .status,
        200
    );

    let r = app
        .post_json("/api/purge", json!({"older_than_days": 0}))
        .await;
    assert_eq!(r.json["deleted"], 6, "{}", r.text);
    let left = app.get("/api/messages").await;
    assert_eq!(ids(&left.json), [queued.id]);

    for bad in [
        json!({"older_than_days": -1}),
        json!({"older_than_days": 1.5}),
        json!({}),
        json!({"older_than_days": i64::MAX}),
    ] {
        let r = app.post_json("/api/purge", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(!r.error().is_empty());
    }
    app.stop().await;
}

#[actix_rt::test]
async fn items_and_the_production_are_operated_through_the_api() {
    let app = spawn_app().await;
    let r = app.get("/api/production").await;
    assert_eq!(r.json["state"], "running");
    assert_eq!(r.json["testing_enabled"], true);
    let names: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["RestService", "Router", "FileOperation", "IrisOperation"]
    );

    let r = app.post("/api/items/Router/restart").await;
    assert_eq!(
        (r.status, r.json["state"].as_str()),
        (200, Some("running")),
        "{}",
        r.text
    );
    let r = app.post("/api/items/IrisOperation/disable").await;
    assert_eq!(
        (r.json["state"].as_str(), r.json["enabled"].as_bool()),
        (Some("disabled"), Some(false))
    );
    assert_eq!(
        app.post("/api/items/IrisOperation/restart").await.status,
        409
    );
    assert_eq!(
        app.post("/api/items/IrisOperation/enable").await.json["state"],
        "running"
    );
    assert_eq!(app.post("/api/items/Nobody/enable").await.status, 404);
    assert_eq!(app.get("/api/items/Router/enable").await.status, 405);

    let r = app.post("/api/production/stop").await;
    assert_eq!(
        (r.status, r.json["ok"].as_bool()),
        (200, Some(true)),
        "{}",
        r.text
    );
    assert_eq!(app.get("/api/production").await.json["state"], "stopped");
    let body = json!({"id": 1, "nom": "x", "salle": "y"});
    assert_eq!(app.post_json("/training/", body.clone()).await.status, 503);
    let r = app.post("/api/production/start").await;
    assert_eq!(r.json["ok"], true);
    assert_eq!(app.get("/api/production").await.json["state"], "running");
    assert_eq!(app.post_json("/training/", body).await.status, 201);

    // An invalid file changes nothing.
    std::fs::write(
        &app.config_path,
        "[production]\nname = \"x\"\n[[item]]\nname = \"A\"\nclass = \"nope\"\n",
    )
    .unwrap();
    let r = app.post("/api/production/update").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json["errors"][0].as_str().unwrap().contains("nope"),
        "{}",
        r.text
    );
    assert_eq!(
        app.get("/api/production").await.json["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let r = app.get("/api/message-types").await;
    let types = r.json["types"].as_array().unwrap();
    let formation = types
        .iter()
        .find(|t| t["type"] == "FormationRequest")
        .expect("FormationRequest");
    assert!(formation["example"]["formation"].is_object());
    assert!(types.iter().any(|t| t["type"] == "TrainingDeleteRequest"));

    let r = app.get("/api/no/such/thing").await;
    assert_eq!(r.status, 404);
    assert!(!r.error().is_empty());
    app.stop().await;
}

#[actix_rt::test]
async fn metrics_are_prometheus_text() {
    let app = spawn_app().await;
    app.create(1, "n", "s").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        r.content_type
    );
    for family in [
        ("interop_messages_processed_total", "counter"),
        ("interop_message_errors_total", "counter"),
        ("interop_queue_depth", "gauge"),
        ("interop_item_restarts_total", "counter"),
        ("interop_processing_seconds", "histogram"),
        ("interop_up", "gauge"),
    ] {
        assert!(
            r.text
                .contains(&format!("# TYPE {} {}\n", family.0, family.1)),
            "{family:?}"
        );
        assert!(
            r.text.contains(&format!("# HELP {} ", family.0)),
            "{family:?}"
        );
    }
    assert!(
        r.text
            .contains("interop_messages_processed_total{item=\"Router\"} 1\n"),
        "{}",
        r.text
    );
    assert!(r.text.contains("interop_up 1\n"));
    let bucket = |le: &str| -> u64 {
        let prefix =
            format!("interop_processing_seconds_bucket{{item=\"IrisOperation\",le=\"{le}\"}} ");
        r.text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no bucket {le}"))
    };
    let mut last = 0;
    for le in interop::runtime::BUCKETS {
        let v = bucket(&le.to_string());
        assert!(v >= last, "buckets are cumulative");
        last = v;
    }
    assert_eq!(bucket("+Inf"), 1);
    assert!(r
        .text
        .contains("interop_processing_seconds_count{item=\"IrisOperation\"} 1\n"));
    app.stop().await;
}

#[actix_rt::test]
async fn openapi_describes_both_faces() {
    let app = spawn_app().await;
    let r = app.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    let paths = r.json["paths"].as_object().expect("paths");
    for p in [
        "/training/",
        "/training/{id}",
        "/api/production",
        "/api/items/{name}/test",
        "/api/messages",
        "/api/sessions/{session_id}/trace",
        "/api/purge",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(r.json["components"]["securitySchemes"]["bearer"].is_object());
    assert!(r.json["components"]["schemas"]["MessageHeader"].is_object());
    app.stop().await;
}

#[actix_rt::test]
async fn a_token_guards_the_api_and_metrics_only() {
    let app = spawn_app_with(Options {
        api_token: Some("s3cret-token".into()),
        ..Options::default()
    })
    .await;
    for path in [
        "/api/production",
        "/metrics",
        "/api/nope",
        "/api/openapi.json",
    ] {
        for token in [
            None,
            Some("wrong".to_string()),
            Some("s3cret-token2".to_string()),
        ] {
            let r = app
                .request_with_token("GET", path, None, None, token.clone())
                .await;
            assert_eq!(r.status, 401, "{path} {token:?}");
            assert_eq!(r.error(), "missing or wrong API token");
        }
    }
    assert_eq!(app.get("/api/production").await.status, 200);
    assert_eq!(app.get("/metrics").await.status, 200);
    // The REST service and the portal stay open.
    let body = json!({"id": 1, "nom": "x", "salle": "y"})
        .to_string()
        .into_bytes();
    let r = app
        .request_with_token(
            "POST",
            "/training/",
            Some("application/json"),
            Some(body),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .request_with_token("GET", "/portal", None, None, None)
        .await;
    assert_eq!(r.status, 200);
    app.stop().await;
}
