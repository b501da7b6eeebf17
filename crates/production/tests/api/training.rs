//! The REST service: CRUD through the production, bad input, disabled service.

use serde_json::{json, Value};

use crate::helpers::{lines, spawn_app, spawn_app_with, Options};

/// (source, target, kind) of each message of a session's trace, in order.
async fn hops(app: &crate::helpers::TestApp, session: i64) -> Vec<(String, String, String)> {
    let r = app.get(&format!("/api/sessions/{session}/trace")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["source"].as_str().unwrap_or("").to_string(),
                m["target"].as_str().unwrap_or("").to_string(),
                m["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A bad request: method, path, content type, body, expected status and field.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16, Value);

fn hop(s: &str, t: &str, k: &str) -> (String, String, String) {
    (s.into(), t.into(), k.into())
}

#[actix_rt::test]
async fn crud_round_trip_goes_through_the_production_with_traces() {
    let app = spawn_app().await;
    let version = app.get("/").await;
    assert_eq!(version.status, 200);
    assert_eq!(version.json["version"], env!("CARGO_PKG_VERSION"));

    let created = app
        .post_json(
            "/training/",
            json!({"id": 1, "nom": "Introduction à IRIS", "salle": "Salle A"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["id"], 1);
    assert_eq!(created.json["nom"], "Introduction à IRIS");
    assert_eq!(created.json["salle"], "Salle A");
    let sid = created.json["session_id"].as_i64().expect("session_id");
    assert_eq!(
        hops(&app, sid).await,
        vec![
            hop("RestService", "Router", "request"),
            hop("Router", "FileOperation", "request"),
            hop("FileOperation", "Router", "reply"),
            hop("Router", "IrisOperation", "request"),
            hop("IrisOperation", "Router", "reply"),
            hop("Router", "RestService", "reply"),
        ]
    );
    assert_eq!(
        lines(&app.out_dir().join("formation.txt")),
        ["1 : Salle A : Introduction à IRIS"]
    );

    let got = app.get("/training/1").await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json["nom"], "Introduction à IRIS");
    let get_sid = got.json["session_id"].as_i64().expect("session_id");
    assert_eq!(
        hops(&app, get_sid).await,
        vec![
            hop("RestService", "IrisOperation", "request"),
            hop("IrisOperation", "RestService", "reply"),
        ]
    );

    let put = app
        .put_json(
            "/training/1/",
            json!({"id": 1, "nom": "Renamed", "salle": "Salle Z"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(
        (put.json["nom"].as_str(), put.json["salle"].as_str()),
        (Some("Renamed"), Some("Salle Z"))
    );
    assert!(put.json["session_id"].as_i64().is_some());
    // Without an id in the body, the path's is used.
    let put = app
        .put_json(
            "/training/1",
            json!({"nom": "Renamed again", "salle": "Salle Z"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);

    let list = app.get("/training").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json["total"], 1);
    assert_eq!(
        list.json["trainings"][0],
        json!({"id": 1, "nom": "Renamed again", "salle": "Salle Z"})
    );
    assert!(list.json["session_id"].as_i64().is_some());

    let deleted = app.delete("/training/1").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.json["deleted"]["nom"], "Renamed again");
    assert!(deleted.json["session_id"].as_i64().is_some());

    for (method, path) in [("GET", "/training/1"), ("DELETE", "/training/1/")] {
        let r = app.request(method, path, None, None).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
        assert_eq!(r.error(), "no training with id 1");
        assert!(r.json["session_id"].as_i64().is_some(), "{}", r.text);
    }
    let r = app
        .put_json("/training/1", json!({"nom": "x", "salle": "y"}))
        .await;
    assert_eq!(
        r.status, 404,
        "PUT of a missing id must not create it: {}",
        r.text
    );

    // Pages.
    for id in 10..15 {
        app.create(id, &format!("t{id}"), "s").await;
    }
    let page = app.get("/training/?limit=2&offset=1").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let ids: Vec<i64> = page.json["trainings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [11, 12]);
    assert_eq!(
        (
            page.json["total"].as_i64(),
            page.json["limit"].as_i64(),
            page.json["offset"].as_i64()
        ),
        (Some(5), Some(2), Some(1))
    );
    let big = app.get("/training/?limit=100000").await;
    assert_eq!(big.json["limit"], 1000);
    app.stop().await;
}

#[actix_rt::test]
async fn bad_input_is_refused_with_a_json_error_and_nothing_is_sent() {
    let app = spawn_app().await;
    let huge = {
        let mut b = br#"{"id":3,"nom":""#.to_vec();
        b.extend(vec![b'a'; 3_000_000]);
        b.extend(br#"","salle":"x"}"#);
        b
    };
    let json_ct = Some("application/json");
    // (method, path, content type, body, status, field)
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"id":2,"nom":"x""#.to_vec(),
            400,
            Value::Null,
        ),
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"id":"two","nom":"x","salle":"y"}"#.to_vec(),
            400,
            json!("id"),
        ),
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"id":2,"nom":5,"salle":"y"}"#.to_vec(),
            400,
            json!("nom"),
        ),
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"nom":"x","salle":"y"}"#.to_vec(),
            422,
            json!("id"),
        ),
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"id":2,"nom":"x"}"#.to_vec(),
            422,
            json!("salle"),
        ),
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"id":2,"nom":"  ","salle":"y"}"#.to_vec(),
            422,
            json!("nom"),
        ),
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"id":0,"nom":"x","salle":"y"}"#.to_vec(),
            422,
            json!("id"),
        ),
        (
            "POST",
            "/training",
            json_ct,
            br#"{"id":9223372036854775808,"nom":"x","salle":"y"}"#.to_vec(),
            422,
            json!("id"),
        ),
        (
            "POST",
            "/training/",
            json_ct,
            br#"{"id":2,"nom":"x","salle":"y","extra":1}"#.to_vec(),
            422,
            json!("extra"),
        ),
        (
            "POST",
            "/training/",
            json_ct,
            b"[1,2,3]".to_vec(),
            400,
            Value::Null,
        ),
        ("POST", "/training/", json_ct, Vec::new(), 400, Value::Null),
        (
            "POST",
            "/training/",
            Some("text/plain"),
            b"id=1".to_vec(),
            415,
            Value::Null,
        ),
        (
            "POST",
            "/training/",
            None,
            br#"{"id":2,"nom":"x","salle":"y"}"#.to_vec(),
            415,
            Value::Null,
        ),
        ("POST", "/training/", json_ct, huge, 413, Value::Null),
        (
            "PUT",
            "/training/abc",
            json_ct,
            br#"{"nom":"x","salle":"y"}"#.to_vec(),
            400,
            json!("id"),
        ),
        (
            "PUT",
            "/training/1",
            json_ct,
            br#"{"id":2,"nom":"x","salle":"y"}"#.to_vec(),
            400,
            json!("id"),
        ),
        (
            "PUT",
            "/training/1",
            json_ct,
            br#"{"id":1,"salle":"y"}"#.to_vec(),
            422,
            json!("nom"),
        ),
        ("GET", "/training/abc", None, Vec::new(), 400, json!("id")),
        ("GET", "/training/0", None, Vec::new(), 422, json!("id")),
        (
            "DELETE",
            "/training/1.5",
            None,
            Vec::new(),
            400,
            json!("id"),
        ),
        (
            "GET",
            "/training/?limit=ten",
            None,
            Vec::new(),
            400,
            json!("limit"),
        ),
        (
            "GET",
            "/training/?offset=-1",
            None,
            Vec::new(),
            422,
            json!("offset"),
        ),
    ];
    for (method, path, ct, body, status, field) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        let body = (method != "GET" && method != "DELETE").then_some(body);
        let r = app.request(method, path, ct, body).await;
        assert_eq!(r.status, status, "{method} {path} {shown}: {}", r.text);
        assert!(
            !r.error().is_empty(),
            "{method} {path} {shown}: no JSON error: {}",
            r.text
        );
        assert_eq!(
            r.json["field"], field,
            "{method} {path} {shown}: {}",
            r.text
        );
    }
    let r = app.request("PATCH", "/training/1", None, None).await;
    assert_eq!(r.status, 405);
    assert!(!r.error().is_empty());

    // Nothing reached the production.
    let sent = app.get("/api/messages?source=RestService").await;
    assert_eq!(sent.json["messages"], json!([]), "{}", sent.text);
    // And it still serves.
    app.create(2, "x", "y").await;
    app.stop().await;
}

#[actix_rt::test]
async fn a_disabled_rest_service_answers_503_until_enabled() {
    let app = spawn_app().await;
    let r = app.post("/api/items/RestService/disable").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = json!({"id": 1, "nom": "x", "salle": "y"});
    let r = app.post_json("/training/", body.clone()).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error(), "the REST service 'RestService' is disabled");
    assert_eq!(app.get("/training/1").await.status, 503);
    assert_eq!(app.get("/").await.status, 200);
    let r = app.post("/api/items/RestService/enable").await;
    assert_eq!(r.json["state"], "running", "{}", r.text);
    assert_eq!(app.post_json("/training/", body).await.status, 201);
    app.stop().await;

    // Disabled in the config file.
    let app = spawn_app_with(Options {
        rest_enabled: false,
        ..Options::default()
    })
    .await;
    let body = json!({"id": 1, "nom": "x", "salle": "y"});
    let r = app.post_json("/training", body.clone()).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.error().contains("disabled"), "{}", r.text);
    app.post("/api/items/RestService/enable").await;
    assert_eq!(app.post_json("/training", body).await.status, 201);
    app.stop().await;
}

#[actix_rt::test]
async fn a_failing_sink_is_a_502_with_the_session_to_trace() {
    // FileOperation's folder cannot be created (a file is in the way): it fails to
    // start, and the router's call to it fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "").unwrap();
    let app = spawn_app_with(Options {
        out_dir: Some(dir.path().join("blocker").join("out")),
        ..Options::default()
    })
    .await;
    let r = app
        .post_json("/training/", json!({"id": 1, "nom": "x", "salle": "y"}))
        .await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.error().contains("FileOperation"), "{}", r.text);
    let sid = r.json["session_id"].as_i64().expect("session_id");
    let trace = app.get(&format!("/api/sessions/{sid}/trace")).await;
    assert_eq!(trace.status, 200);
    let last = trace.json["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["kind"].as_str(), last["is_error"].as_bool()),
        (Some("reply"), Some(true))
    );
    app.stop().await;
}
