//! Hot update under load: FileOperation's file changes while POSTs keep coming.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{call_blocking, lines, spawn_app};

const POSTS: i64 = 200;
const THREADS: i64 = 8;

/// One POST: its id, when it was sent and answered, and the status.
struct Sent {
    id: i64,
    start: Instant,
    end: Instant,
    status: u16,
}

#[actix_rt::test]
async fn update_swaps_the_file_under_a_stream_of_posts_and_loses_none() {
    let app = spawn_app().await;
    let url = app.url.clone();
    let done = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let posts = {
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let agent = ureq::agent();
            std::thread::scope(|scope| {
                for t in 0..THREADS {
                    let (agent, url, done) = (agent.clone(), url.clone(), done.clone());
                    scope.spawn(move || {
                        for id in (1..=POSTS).filter(|id| id % THREADS == t) {
                            let body = json!({"id": id, "nom": format!("n{id}"), "salle": "s"});
                            let start = Instant::now();
                            let r = call_blocking(
                                &agent,
                                "POST",
                                &format!("{url}/training/"),
                                Some("application/json"),
                                Some(body.to_string().as_bytes()),
                                None,
                            );
                            let sent = Sent {
                                id,
                                start,
                                end: Instant::now(),
                                status: r.status,
                            };
                            if let Ok(mut d) = done.lock() {
                                d.push(sent);
                            }
                        }
                    });
                }
            });
        })
    };
    // Let a part of the stream go to the old file, then swap.
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.lock().map(|d| d.len()).unwrap_or(0) < (POSTS / 4) as usize {
        assert!(Instant::now() < deadline, "the POSTs do not progress");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    app.rewrite_config("swapped.txt");
    let update_start = Instant::now();
    let r = app.post("/api/production/update").await;
    let update_end = Instant::now();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["report"]["restarted"],
        json!(["FileOperation"]),
        "{}",
        r.text
    );
    posts.await.expect("POST threads");

    let sent = std::mem::take(&mut *done.lock().unwrap());
    assert_eq!(sent.len(), POSTS as usize);
    let failed: Vec<_> = sent
        .iter()
        .filter(|s| s.status != 201)
        .map(|s| (s.id, s.status))
        .collect();
    assert!(failed.is_empty(), "POSTs not created: {failed:?}");

    let id_of = |line: &String| -> i64 {
        line.split(" : ")
            .next()
            .and_then(|i| i.parse().ok())
            .expect("an id : salle : nom line")
    };
    let old: HashSet<i64> = lines(&app.out_dir().join("formation.txt"))
        .iter()
        .map(id_of)
        .collect();
    let new: HashSet<i64> = lines(&app.out_dir().join("swapped.txt"))
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        old.len() + new.len(),
        POSTS as usize,
        "old {} + new {}",
        old.len(),
        new.len()
    );
    assert!(old.is_disjoint(&new));
    assert!(
        !old.is_empty() && !new.is_empty(),
        "old {} new {}",
        old.len(),
        new.len()
    );
    for s in &sent {
        if s.end < update_start {
            assert!(
                old.contains(&s.id),
                "{} answered before the update is not in the old file",
                s.id
            );
        }
        if s.start > update_end {
            assert!(
                new.contains(&s.id),
                "{} sent after the update is not in the new file",
                s.id
            );
        }
    }
    let list = app.get("/training/?limit=1000").await;
    assert_eq!(list.json["total"], POSTS);
    app.stop().await;
}
