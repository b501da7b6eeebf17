//! The production runtime, end to end on a real embedded SQLite: routing, persistence,
//! traces, timeouts, errors, supervision, life cycle, validation, recovery.

mod hosts;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hosts::{counters, registry, Other, Ping, Pong};
use interop::store::{EventFilter, MessageFilter, MessageRow};
use interop::{AnyMessage, Production, ProductionConfig, SendError};

fn config(dir: &std::path::Path, items: &str) -> ProductionConfig {
    let text = format!(
        "[production]\nname = \"T\"\ndata_dir = \"{}\"\ndefault_timeout_ms = 5000\n{items}",
        dir.join("data").display()
    );
    ProductionConfig::parse(&text, "test.toml").unwrap()
}

const CHAIN: &str = r#"
[[item]]
name = "Chain"
class = "test-chain"
[item.settings]
first = "A"
second = "B"

[[item]]
name = "A"
class = "test-echo"
[item.settings]
label = "a"

[[item]]
name = "B"
class = "test-echo"
pool_size = 2
[item.settings]
label = "b"
"#;

async fn start(dir: &std::path::Path, items: &str) -> Production {
    Production::start(config(dir, items), Arc::new(registry()), None)
        .await
        .unwrap()
}

fn ping(n: i64) -> AnyMessage {
    AnyMessage::new(&Ping { n }).unwrap()
}

async fn trace(p: &Production, session: i64) -> Vec<MessageRow> {
    p.store().flush().await.unwrap();
    p.store().trace(session).unwrap()
}

#[actix_rt::test]
async fn sync_chain_is_routed_and_traced_in_causal_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), CHAIN).await;
    let reply = p.send("Tester", "Chain", ping(2)).await;
    let pong = reply.result.unwrap().decode::<Pong>().unwrap();
    assert_eq!(pong.n, 2 + 20);

    let rows = trace(&p, reply.session_id).await;
    let hops: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.source.as_str(),
                r.target.as_str(),
                r.type_name.as_str(),
                r.kind.as_str(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("Tester", "Chain", "Ping", "request"),
            ("Chain", "A", "Ping", "request"),
            ("A", "Chain", "Pong", "reply"),
            ("Chain", "B", "Ping", "request"),
            ("B", "Chain", "Pong", "reply"),
            ("Chain", "Tester", "Pong", "reply"),
        ]
    );
    // Header fields: one session, parents link requests to their cause and replies to
    // their request, everything completed with both timestamps.
    assert!(rows.iter().all(|r| r.session_id == reply.session_id));
    assert_eq!(rows[0].id, reply.session_id);
    assert_eq!(rows[0].parent_id, None);
    assert_eq!(rows[1].parent_id, Some(rows[0].id));
    assert_eq!(rows[2].parent_id, Some(rows[1].id));
    assert_eq!(rows[5].parent_id, Some(rows[0].id));
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    assert!(rows
        .iter()
        .all(|r| r.status == "completed" && !r.is_error && r.processed.is_some()));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rows[3].body).unwrap(),
        serde_json::json!({"n": 20})
    );
    p.stop().await;
}

#[actix_rt::test]
async fn async_requests_come_back_to_on_response() {
    let dir = tempfile::tempdir().unwrap();
    let items = CHAIN.replace("second = \"B\"", "second = \"B\"\nasynchronous = true");
    let p = start(dir.path(), &items).await;
    let reply = p.send("Tester", "Chain", ping(3)).await;
    let pong = reply.result.unwrap().decode::<Pong>().unwrap();
    assert_eq!((pong.n, pong.by.as_str()), (33, "chain-async"));
    let rows = trace(&p, reply.session_id).await;
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert_eq!(rows.iter().filter(|r| r.kind == "reply").count(), 3);
    p.stop().await;
}

#[actix_rt::test]
async fn a_slow_target_times_out_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let items = CHAIN
        .replace("label = \"a\"", "label = \"a\"\nsleep_ms = 3000")
        .replace("default_timeout_ms = 5000", "");
    let mut cfg = config(dir.path(), &items);
    cfg.production.default_timeout_ms = 200;
    let p = Production::start(cfg, Arc::new(registry()), None)
        .await
        .unwrap();
    let reply = p.send("Tester", "A", ping(1)).await;
    match reply.result {
        Err(SendError::Timeout { target, timeout_ms }) => {
            assert_eq!((target.as_str(), timeout_ms), ("A", 200))
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let rows = trace(&p, reply.session_id).await;
    assert_eq!(rows[0].status, "error");
    assert!(rows[0].error_text.as_deref().unwrap().contains("200 ms"));
}

#[actix_rt::test]
async fn unknown_targets_and_unexpected_types_are_errors_not_drops() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), CHAIN).await;
    let r = p.send("Tester", "Nowhere", ping(1)).await;
    assert_eq!(
        r.result.unwrap_err(),
        SendError::UnknownTarget("Nowhere".into())
    );

    let other = AnyMessage::new(&Other {}).unwrap();
    let r = p.send("Tester", "A", other).await;
    let err = r.result.unwrap_err();
    assert!(
        err.to_string().contains("unexpected message type 'Other'"),
        "{err}"
    );
    let rows = trace(&p, r.session_id).await;
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[1].kind.as_str(), rows[1].is_error), ("reply", true));
    assert_eq!(rows[0].status, "error");
    assert!(rows[1]
        .error_text
        .as_deref()
        .unwrap()
        .contains("accepts: Ping"));
    p.stop().await;
}

#[actix_rt::test]
async fn an_error_reply_is_stored_and_passed_up_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let items = CHAIN.replace("label = \"b\"", "label = \"b\"\nfail_on = 40");
    let p = start(dir.path(), &items).await;
    let r = p.send("Tester", "Chain", ping(4)).await;
    let err = r.result.unwrap_err().to_string();
    assert!(err.contains("b refuses 40"), "{err}");
    let rows = trace(&p, r.session_id).await;
    let errors: Vec<_> = rows
        .iter()
        .filter(|r| r.is_error && r.kind == "reply")
        .map(|r| (r.source.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(errors, [("B", "Chain"), ("Chain", "Tester")]);
    let log = p
        .store()
        .events(&EventFilter {
            level: Some("error".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(log
        .iter()
        .any(|e| e.item.as_deref() == Some("B") && e.text.contains("refuses 40")));
    p.stop().await;
}

#[actix_rt::test]
async fn a_panicking_host_gets_an_error_reply_and_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let items = CHAIN.replace(
        "label = \"a\"",
        "label = \"a\"\npanic_on = 7\ntag = \"panic\"",
    );
    let p = start(dir.path(), &items).await;
    let r = p.send("Tester", "A", ping(7)).await;
    assert!(r.result.unwrap_err().to_string().contains("panicked"));
    // The item works again, with a fresh instance.
    let r = p.send("Tester", "A", ping(8)).await;
    assert_eq!(r.result.unwrap().decode::<Pong>().unwrap().n, 8);
    let c = counters("panic");
    assert_eq!(c.inits.load(Ordering::SeqCst), 2);
    assert_eq!(c.tear_downs.load(Ordering::SeqCst), 1);
    p.store().flush().await.unwrap();
    let alerts = p
        .store()
        .events(&EventFilter {
            level: Some("alert".into()),
            item: Some("A".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(p.item("A").unwrap().view().restarts, 1);
    p.stop().await;
}

#[actix_rt::test]
async fn a_service_starts_sessions_and_stop_tears_every_instance_down_once() {
    let dir = tempfile::tempdir().unwrap();
    let items = format!(
        "{}\n[[item]]\nname = \"Tick\"\nclass = \"test-ticker\"\n[item.settings]\ntarget = \"Chain\"\ncount = 5\ntag = \"life-svc\"\n",
        CHAIN
            .replace("label = \"b\"", "label = \"b\"\ntag = \"life-b\"")
            .replace("second = \"B\"", "second = \"B\"\ntag = \"life-chain\"")
    );
    let p = start(dir.path(), &items).await;
    for _ in 0..200 {
        if counters("life-svc").handled.load(Ordering::SeqCst) == 5 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counters("life-svc").handled.load(Ordering::SeqCst), 5);
    let sessions = p
        .store()
        .messages(&MessageFilter {
            source: Some("Tick".into()),
            ..Default::default()
        })
        .unwrap();
    let mut ids: Vec<i64> = sessions.iter().map(|m| m.session_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5, "one session per input");

    // Restart tears B's two instances down and builds two new ones.
    p.restart("B").await.unwrap();
    assert_eq!(counters("life-b").tear_downs.load(Ordering::SeqCst), 2);
    assert_eq!(counters("life-b").inits.load(Ordering::SeqCst), 4);
    p.stop().await;
    assert_eq!(counters("life-b").tear_downs.load(Ordering::SeqCst), 4);
    assert_eq!(counters("life-svc").tear_downs.load(Ordering::SeqCst), 1);
    assert_eq!(counters("life-chain").tear_downs.load(Ordering::SeqCst), 1);
    // Stopping twice does not tear down twice.
    p.stop().await;
    assert_eq!(counters("life-b").tear_downs.load(Ordering::SeqCst), 4);
}

#[actix_rt::test]
async fn disabled_items_refuse_requests_until_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), CHAIN).await;
    p.disable("A").await.unwrap();
    let r = p.send("Tester", "A", ping(1)).await;
    assert_eq!(r.result.unwrap_err(), SendError::TargetDisabled("A".into()));
    p.enable("A").await.unwrap();
    assert!(p.send("Tester", "A", ping(1)).await.result.is_ok());
    p.stop().await;
}

#[actix_rt::test]
async fn update_swaps_only_the_changed_item_without_losing_requests() {
    let dir = tempfile::tempdir().unwrap();
    let items = CHAIN
        .replace("label = \"a\"", "label = \"a\"\ntag = \"upd-a\"")
        .replace("label = \"b\"", "label = \"b\"\ntag = \"upd-b\"");
    let p = start(dir.path(), &items).await;
    let sender = {
        let p = p.clone();
        actix_rt::spawn(async move {
            let mut labels = Vec::new();
            for n in 0..300 {
                let r = p.send("Tester", "A", ping(n)).await;
                labels.push(r.result.map(|m| m.decode::<Pong>().unwrap().by));
            }
            labels
        })
    };
    actix_rt::time::sleep(Duration::from_millis(20)).await;
    let report = p
        .apply(config(
            dir.path(),
            &items.replace("label = \"a\"", "label = \"a2\""),
        ))
        .await
        .unwrap();
    assert_eq!(report.restarted, ["A"]);
    assert_eq!(report.unchanged.len(), 2);
    let labels = sender.await.unwrap();
    assert!(
        labels.iter().all(|l| l.is_ok()),
        "a request was lost: {:?}",
        labels.iter().find(|l| l.is_err())
    );
    assert_eq!(labels.last().unwrap().as_deref().unwrap(), "a2");
    assert_eq!(counters("upd-a").tear_downs.load(Ordering::SeqCst), 1);
    assert_eq!(counters("upd-b").tear_downs.load(Ordering::SeqCst), 0);
    p.stop().await;
}

#[actix_rt::test]
async fn unfinished_requests_are_redelivered_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let items = CHAIN.replace("label = \"a\"", "label = \"a\"\ntag = \"recover\"");
    {
        // A previous run stored a request to A and died before A answered.
        let p = start(dir.path(), &items).await;
        p.stop().await;
        let db = interop::EmbeddedDb::open(&dir.path().join("data/production.db")).unwrap();
        let row = MessageRow {
            id: 1000,
            session_id: 1000,
            parent_id: None,
            source: "Tester".into(),
            target: "A".into(),
            type_name: "Ping".into(),
            kind: "request".into(),
            status: "queued".into(),
            is_error: false,
            error_text: None,
            created: interop::store::now(),
            processed: None,
            body: "{\"n\":5}".into(),
            session_key: None,
        };
        let store = interop::store::SqliteStore::new(db, true).unwrap();
        use interop::store::MessageStore;
        store.insert(row).await.unwrap();
    }
    let before = counters("recover").handled.load(Ordering::SeqCst);
    let p = start(dir.path(), &items).await;
    assert_eq!(
        counters("recover").handled.load(Ordering::SeqCst),
        before + 1
    );
    let rows = trace(&p, 1000).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].status, "completed");
    assert_eq!(rows[1].body, "{\"n\":5,\"by\":\"a\"}");
    // New ids continue after the recovered ones.
    let r = p.send("Tester", "A", ping(1)).await;
    assert!(r.request_id > 1001);
    p.stop().await;
}

#[actix_rt::test]
async fn concurrent_keyed_inputs_are_each_accepted_exactly_once() {
    // Many at once, so the store's writer groups them, duplicates and all, into
    // multi-row inserts.
    let dir = tempfile::tempdir().unwrap();
    let items = format!(
        "{CHAIN}\n[[item]]\nname = \"Tick\"\nclass = \"test-ticker\"\n[item.settings]\ntarget = \"A\"\ncount = 0\n"
    );
    let p = start(dir.path(), &items).await;
    let ctx = p.service_context("Tick").unwrap();
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for n in 0..300i64 {
        // Keys 0..100 three times each.
        let ctx = ctx.clone();
        pending.push(async move {
            let key = format!("in.csv:{}", n % 100);
            (
                key,
                ctx.send_request_keyed("A", &Ping { n }, format!("in.csv:{}", n % 100))
                    .await,
            )
        });
    }
    use futures_util::StreamExt;
    let mut accepted = std::collections::HashMap::new();
    let mut duplicates = 0;
    while let Some((key, reply)) = pending.next().await {
        match reply.result {
            Ok(_) => *accepted.entry(key).or_insert(0) += 1,
            Err(SendError::Duplicate(k)) => {
                assert_eq!(k, key);
                duplicates += 1
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(accepted.len(), 100);
    assert!(accepted.values().all(|&n| n == 1), "{accepted:?}");
    assert_eq!(duplicates, 200);
    p.store().flush().await.unwrap();
    let stored = p
        .store()
        .messages(&MessageFilter {
            target: Some("A".into()),
            source: Some("Tick".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(stored.len(), 100, "one stored request per key");
    p.stop().await;
}

#[actix_rt::test]
async fn a_request_still_in_flight_shows_in_the_trace_and_ends_written_once() {
    // B sleeps: the chain's request to it is held back by the store's writer only
    // briefly, then shows as delivered while B works, and ends completed.
    let dir = tempfile::tempdir().unwrap();
    let slow = CHAIN.replace("label = \"b\"", "label = \"b\"\nsleep_ms = 1500");
    let p = start(dir.path(), &slow).await;
    let sending = {
        let p = p.clone();
        actix_rt::spawn(async move { p.send("Tester", "Chain", ping(1)).await })
    };
    let mut seen = None;
    for _ in 0..50 {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let in_flight = p
            .store()
            .messages(&MessageFilter {
                target: Some("B".into()),
                ..Default::default()
            })
            .unwrap();
        if let Some(row) = in_flight.into_iter().next() {
            seen = Some(row);
            break;
        }
    }
    let seen = seen.expect("the request to B is visible while B works");
    assert_eq!(seen.status, "delivered");
    let reply = sending.await.unwrap();
    assert!(reply.result.is_ok());
    let rows = trace(&p, reply.session_id).await;
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.status == "completed"), "{rows:?}");
    p.stop().await;
}

#[actix_rt::test]
async fn many_sessions_in_flight_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), CHAIN).await;
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for n in 0..2000 {
        let p = p.clone();
        pending.push(async move { p.send("Tester", "Chain", ping(n)).await });
    }
    use futures_util::StreamExt;
    let mut ok = 0;
    while let Some(r) = pending.next().await {
        assert_eq!(r.result.unwrap().decode::<Pong>().unwrap().n % 11, 0);
        ok += 1;
    }
    assert_eq!(ok, 2000);
    p.store().flush().await.unwrap();
    let all = p
        .store()
        .messages(&MessageFilter {
            limit: Some(1000),
            status: Some("completed".into()),
            target: Some("Tester".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 1000, "page limit");
    p.stop().await;
}

mod validation {
    use super::*;

    fn errors(items: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        match registry().validate(&config(dir.path(), items)) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn one_error(items: &str) -> String {
        let e = errors(items);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    }

    #[test]
    fn the_reference_wiring_is_valid() {
        assert!(errors(CHAIN).is_empty());
    }

    #[test]
    fn unknown_class_is_named() {
        let e = one_error(&CHAIN.replace("class = \"test-chain\"", "class = \"test-nope\""));
        assert!(
            e.contains("item 'Chain'") && e.contains("unknown class 'test-nope'"),
            "{e}"
        );
        assert!(e.contains("test-echo"), "lists what is registered: {e}");
    }

    #[test]
    fn unknown_target_is_named() {
        let e = one_error(&CHAIN.replace("first = \"A\"", "first = \"Nobody\""));
        assert!(
            e.contains("item 'Chain'") && e.contains("'first'") && e.contains("'Nobody'"),
            "{e}"
        );
    }

    #[test]
    fn unknown_setting_is_named() {
        let e = one_error(&CHAIN.replace("label = \"a\"", "label = \"a\"\nlabl = 1"));
        assert!(e.contains("item 'A'") && e.contains("labl"), "{e}");
    }

    #[test]
    fn ill_typed_setting_is_named() {
        let e = one_error(&CHAIN.replace("label = \"a\"", "label = \"a\"\nsleep_ms = \"soon\""));
        assert!(
            e.contains("item 'A'") && e.contains("soon") && e.contains("sleep_ms"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_setting_is_named() {
        let e = one_error(&CHAIN.replace("label = \"a\"", ""));
        assert!(e.contains("item 'A'") && e.contains("label"), "{e}");
    }

    #[test]
    fn duplicate_item_name_is_named() {
        let e = errors(&CHAIN.replace("name = \"B\"", "name = \"A\""))[0].clone();
        assert!(e.contains("item 'A'") && e.contains("duplicate"), "{e}");
    }

    #[test]
    fn contract_mismatch_names_both_items_and_the_type() {
        let e = one_error(
            &CHAIN
                .replace("first = \"A\"", "first = \"Chain\"\n")
                .replace(
                    "class = \"test-echo\"\npool_size = 2",
                    "class = \"test-ticker\"\npool_size = 2",
                )
                .replace("label = \"b\"", "target = \"A\"\ncount = 1"),
        );
        assert!(
            e.contains("item 'Chain'") && e.contains("'B'") && e.contains("Ping"),
            "{e}"
        );
    }

    #[test]
    fn missing_environment_variable_is_named() {
        let e = one_error(&CHAIN.replace("label = \"a\"", "label = \"${INTEROP_TEST_UNSET_VAR}\""));
        assert!(
            e.contains("item 'A'") && e.contains("INTEROP_TEST_UNSET_VAR"),
            "{e}"
        );
    }

    #[test]
    fn zero_pool_size_is_refused() {
        let e = one_error(&CHAIN.replace("pool_size = 2", "pool_size = 0"));
        assert!(e.contains("item 'B'") && e.contains("pool_size"), "{e}");
    }
}

#[actix_rt::test]
async fn a_keyed_input_is_accepted_once_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let items = format!(
        "{CHAIN}\n[[item]]\nname = \"Tick\"\nclass = \"test-ticker\"\n[item.settings]\ntarget = \"A\"\ncount = 0\n"
    );
    {
        let p = start(dir.path(), &items).await;
        let ctx = p.service_context("Tick").unwrap();
        let first = ctx
            .send_request_keyed("A", &Ping { n: 1 }, "in.csv:2".into())
            .await;
        assert!(first.result.is_ok());
        let again = ctx
            .send_request_keyed("A", &Ping { n: 1 }, "in.csv:2".into())
            .await;
        assert_eq!(
            again.result.unwrap_err(),
            SendError::Duplicate("in.csv:2".into())
        );
        p.stop().await;
    }
    let p = start(dir.path(), &items).await;
    let ctx = p.service_context("Tick").unwrap();
    let after = ctx
        .send_request_keyed("A", &Ping { n: 1 }, "in.csv:2".into())
        .await;
    assert!(matches!(after.result, Err(SendError::Duplicate(_))));
    let other = ctx
        .send_request_keyed("A", &Ping { n: 2 }, "in.csv:3".into())
        .await;
    assert!(other.result.is_ok());
    p.stop().await;
}

#[actix_rt::test]
async fn a_failing_item_raises_one_alert_per_grace_period_to_the_alert_target() {
    let dir = tempfile::tempdir().unwrap();
    let items = format!(
        "{}\n[[item]]\nname = \"Alerts\"\nclass = \"test-alerts\"\n",
        CHAIN.replace("label = \"b\"", "label = \"alerting-b\"\nfail_on = 1")
    );
    let mut cfg = config(dir.path(), &items);
    cfg.production.alert_target = Some("Alerts".into());
    cfg.production.alert_grace_ms = 60_000;
    let p = Production::start(cfg, Arc::new(registry()), None)
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(p.send("Tester", "B", ping(1)).await.result.is_err());
    }
    for _ in 0..100 {
        if hosts::alerts_received()
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.text.contains("alerting-b"))
        {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let alerts: Vec<_> = hosts::alerts_received()
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.text.contains("alerting-b"))
        .cloned()
        .collect();
    assert_eq!(alerts.len(), 1, "one alert in the grace period: {alerts:?}");
    assert_eq!(alerts[0].source, "B");
    let view = p.item("B").unwrap().view();
    assert_eq!((view.alerts, view.errors), (1, 3));
    p.store().flush().await.unwrap();
    let logged = p
        .store()
        .events(&EventFilter {
            level: Some("alert".into()),
            item: Some("B".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(logged.len(), 1);
    p.stop().await;
}

#[test]
fn an_alert_target_that_cannot_take_alerts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), CHAIN);
    cfg.production.alert_target = Some("A".into());
    let errors = registry().validate(&cfg).err().unwrap();
    assert!(
        errors[0]
            .to_string()
            .contains("does not accept AlertRequest"),
        "{errors:?}"
    );
}

mod config_fuzz {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"A\"".to_string()),
            Just("\"${INTEROP_FUZZ_UNSET}\"".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            "\"\\PC{0,12}\"".prop_map(|s| s.replace('\\', "")),
            Just("[1, \"x\"]".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any text: a config or an error naming the file, never a panic.
        #[test]
        fn arbitrary_text_is_parsed_or_refused(text in "\\PC{0,300}") {
            if let Err(e) = ProductionConfig::parse(&text, "fuzz.toml") {
                prop_assert!(e.to_string().contains("fuzz.toml"));
            }
        }

        /// Well-formed files with random classes, names and settings: validate answers
        /// with every item's settings or with errors, never a panic.
        #[test]
        fn random_items_validate_or_name_their_errors(items in proptest::collection::vec((
            prop_oneof![Just("A"), Just("B"), Just("Chain"), Just("")],
            prop_oneof![Just("test-echo"), Just("test-chain"), Just("test-ticker"), Just("test-alerts"), Just("nope")],
            any::<u8>(),
            proptest::collection::vec((prop_oneof![Just("label"), Just("first"), Just("second"), Just("target"), Just("count"), Just("sleep_ms"), Just("bogus")], value()), 0..4),
        ), 0..6)) {
            let mut text = String::new();
            for (name, class, pool, settings) in &items {
                text.push_str(&format!("[[item]]\nname = \"{name}\"\nclass = \"{class}\"\npool_size = {pool}\n[item.settings]\n"));
                let mut seen = std::collections::HashSet::new();
                for (k, v) in settings {
                    if seen.insert(*k) {
                        text.push_str(&format!("{k} = {v}\n"));
                    }
                }
            }
            let dir = std::env::temp_dir();
            let full = format!("[production]\nname = \"F\"\ndata_dir = \"{}\"\n{text}", dir.display());
            if let Ok(cfg) = ProductionConfig::parse(&full, "fuzz.toml") {
                match registry().validate(&cfg) {
                    Ok(valid) => prop_assert_eq!(valid.len(), cfg.items.len()),
                    Err(errors) => prop_assert!(errors.iter().all(|e| !e.to_string().is_empty())),
                }
            }
        }
    }
}

mod harness {
    use super::*;
    use interop::testing::TestContext;

    #[actix_rt::test]
    async fn stubs_can_answer_late_and_hosts_carry_their_item_name() {
        let ctx = TestContext::new()
            .named("MyChain")
            .reply_from("A", |p: Ping| Pong {
                n: p.n,
                by: "a".into(),
            })
            .reply_from("B", |p: Ping| Pong {
                n: p.n,
                by: "b".into(),
            })
            .delay_from("B", Duration::from_millis(80));
        let chain = ctx
            .process::<hosts::Chain>(hosts::ChainSettings {
                first: "A".into(),
                second: "B".into(),
                asynchronous: false,
                tag: String::new(),
            })
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let pong: Pong = chain.send(&Ping { n: 1 }).await.unwrap().decode().unwrap();
        assert_eq!(pong.n, 11);
        assert!(started.elapsed() >= Duration::from_millis(80));
        assert!(ctx.sent().iter().all(|s| s.source == "MyChain"));
    }

    #[actix_rt::test]
    async fn a_service_under_test_can_be_asked_to_stop() {
        let ctx = TestContext::new().reply_from("A", |p: Ping| Pong {
            n: p.n,
            by: "a".into(),
        });
        let svc = ctx
            .service::<hosts::Ticker>(hosts::TickerSettings {
                target: "A".into(),
                count: 1,
                call_interval_ms: 10,
                tag: String::new(),
            })
            .await
            .unwrap();
        assert!(!svc.context().stopping());
        svc.request_stop();
        assert!(svc.context().stopping());
    }

    #[test]
    fn a_class_whose_target_setting_does_not_exist_is_refused_by_validate() {
        let dir = tempfile::tempdir().unwrap();
        let items = "[[item]]\nname = \"T\"\nclass = \"test-typo\"\n[item.settings]\nfirst = \"x\"\nsecond = \"y\"\n";
        let errors = registry()
            .validate(&config(dir.path(), items))
            .err()
            .unwrap();
        assert!(errors[0].to_string().contains("'frist'"), "{errors:?}");
    }
}

#[actix_rt::test]
async fn an_instance_whose_actor_dies_is_rebuilt_by_the_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let items = CHAIN.replace("label = \"a\"", "label = \"a\"\ntag = \"supervised\"");
    let p = start(dir.path(), &items).await;
    p.crash_instance("A").await;
    let started = std::time::Instant::now();
    loop {
        if p.send("Tester", "A", ping(3)).await.result.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "A never came back"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counters("supervised").inits.load(Ordering::SeqCst), 2);
    let view = p.item("A").unwrap().view();
    assert_eq!((view.restarts, view.alerts), (1, 1));
    p.stop().await;
}
