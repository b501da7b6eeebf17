//! The CLI binary against a running production.

use std::process::{Command, Output};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp};

/// Run `production ARGS` off the actix thread; (exit code, stdout, stderr).
async fn cli(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out: Output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_production"))
            .args(&args)
            .env_remove("INTEROP_API_TOKEN")
            .env_remove("INTEROP_CONFIG")
            .env("RUST_LOG", "off")
            .output()
            .expect("run the production binary")
    })
    .await
    .expect("CLI thread");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn cli_at(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--url", app.url.as_str()]);
    cli(&all).await
}

#[actix_rt::test]
async fn the_cli_operates_a_running_production() {
    let app = spawn_app().await;
    let sid = app.create(1, "Intro", "A").await;

    let (code, out, err) = cli_at(&app, &["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("production ApiTest: running"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("IrisOperation"))
        .expect("IrisOperation row");
    assert!(
        line.contains("op-iris") && line.contains("running"),
        "{line}"
    );

    let (code, out, err) = cli_at(&app, &["trace", &sid.to_string()]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with(&format!(
            "#{sid}  RestService -> Router  FormationRequest  [completed]"
        )),
        "{out}"
    );
    assert!(
        lines[2].starts_with("  #") && lines[2].contains("Router -> FileOperation"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("  #")
            && lines[3].contains("Router <- FileOperation  FormationStored"),
        "{out}"
    );
    assert!(
        lines[6].starts_with('#') && lines[6].contains("RestService <- Router  FormationResponse"),
        "{out}"
    );

    let (code, out, _) = cli_at(
        &app,
        &[
            "test",
            "Router",
            "--type",
            "FormationRequest",
            "--body",
            r#"{"formation":{"id":2,"nom":"x","salle":"y"}}"#,
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("reply FormationResponse"), "{out}");

    let (code, out, _) = cli_at(
        &app,
        &["messages", "--target", "IrisOperation", "--limit", "1"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ID") && out.contains("IrisOperation") && out.contains("(more: --before"),
        "{out}"
    );

    let (code, out, _) = cli_at(&app, &["log", "--item", "Router", "--limit", "3"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("TIME") && out.contains("Router"), "{out}");

    let (code, out, _) = cli_at(&app, &["status", "--json"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(4));

    let (code, out, _) = cli_at(&app, &["disable", "FileOperation"]).await;
    assert_eq!((code, out.trim()), (0, "item FileOperation: disabled"));
    let (code, out, _) = cli_at(&app, &["enable", "FileOperation"]).await;
    assert_eq!((code, out.trim()), (0, "item FileOperation: running"));
    let (code, _, _) = cli_at(&app, &["restart", "Router"]).await;
    assert_eq!(code, 0);
    let (code, out, _) = cli_at(&app, &["update"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("4 unchanged"), "{out}");
    let (code, out, _) = cli_at(&app, &["purge", "--older-than-days", "30"]).await;
    assert_eq!((code, out.trim()), (0, "deleted 0 messages"));
    let (code, out, _) = cli_at(&app, &["stop"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = cli_at(&app, &["start"]).await;
    assert_eq!(code, 0);

    // The API's error: exit 1 with its text.
    let (code, _, err) = cli_at(&app, &["enable", "Nobody"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no item named 'Nobody'"), "{err}");
    let (code, _, err) = cli_at(&app, &["test", "Router", "--type", "Nope", "--body", "{}"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown message type"), "{err}");
    // Usage: exit 2.
    let (code, _, _) = cli_at(
        &app,
        &[
            "test",
            "Router",
            "--type",
            "FormationRequest",
            "--body",
            "{",
        ],
    )
    .await;
    assert_eq!(code, 2);
    let (code, _, _) = cli(&["purge"]).await;
    assert_eq!(code, 2);
    app.stop().await;

    // Nothing there: exit 3, naming the URL.
    let (code, _, err) = cli(&["status", "--url", "http://127.0.0.1:9"]).await;
    assert_eq!(code, 3);
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
}

#[actix_rt::test]
async fn the_cli_finds_the_url_and_token_in_the_config() {
    let app = spawn_app_with(Options {
        api_token: Some("cli-token".into()),
        ..Options::default()
    })
    .await;
    // A config naming the server's real address, as an operator's file would.
    let config = app.dir.path().join("cli.toml");
    let addr = app.url.trim_start_matches("http://");
    std::fs::write(
        &config,
        format!("[production]\nname = \"x\"\nhttp = \"{addr}\"\napi_token = \"cli-token\"\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let (code, out, err) = cli(&["--config", &config, "status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ApiTest"), "{out}");
    let (code, _, err) = cli_at(&app, &["status"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("missing or wrong API token"), "{err}");
    let (code, _, _) = cli_at(&app, &["status", "--token", "cli-token"]).await;
    assert_eq!(code, 0);
    app.stop().await;
}

#[actix_rt::test]
async fn the_cli_resends_one_message_or_a_filtered_set() {
    let app = spawn_app().await;
    let sid = app.create(5, "Resend me", "R").await;
    // The session's first message is the REST service's request to the router.
    let (code, out, err) = cli_at(&app, &["resend", &sid.to_string()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("message {sid} resent as message ")),
        "{out}"
    );

    let (code, out, err) = cli_at(
        &app,
        &[
            "resend",
            "--target",
            "IrisOperation",
            "--type",
            "TrainingIrisRequest",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("resent 2: 2 ok, 0 failed"), "{out}");

    let (code, _, err) = cli_at(&app, &["resend", "1", "--target", "Router"]).await;
    assert_eq!(code, 2, "{err}");
}
