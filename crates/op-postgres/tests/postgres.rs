//! op-postgres against a real PostgreSQL (127.0.0.1:5432, or the server `DATABASE_URL`
//! names): each test works in a scratch database of its own, dropped at the end.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::prelude::*;
use formation_messages::{Formation, FormationRequest, FormationStored};
use interop::testing::{settings_from_toml, TestContext};
use interop::Level;
use op_postgres::schema::formation;
use op_postgres::{FormationRow, PostgresOperation, Settings};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| ADMIN_URL.to_string())
}

/// `admin` with its database replaced by `db`.
fn url_for(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{query}", &base[..path_start])
}

/// (user, password, host, port) of the admin URL, for the host/port settings test.
fn url_parts(url: &str) -> (String, String, String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    (
        user.to_string(),
        password.to_string(),
        host.to_string(),
        port.parse().unwrap_or(5432),
    )
}

/// A database created for one test and dropped when it goes out of scope.
struct ScratchDb {
    name: String,
    url: String,
}

impl ScratchDb {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "interop_test_pg_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::establish(&admin_url())
            .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", admin_url()));
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .expect("drop stale scratch database");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create scratch database");
        let url = url_for(&admin_url(), &name);
        Self { name, url }
    }

    fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the scratch database")
    }

    fn rows(&self) -> Vec<FormationRow> {
        formation::table
            .select(FormationRow::as_select())
            .order(formation::id)
            .load(&mut self.conn())
            .expect("read formation")
    }

    fn url_settings(&self) -> Settings {
        Settings {
            url: Some(self.url.clone()),
            retry_interval_ms: 100,
            failure_timeout_ms: 2000,
            ..Settings::default()
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&admin_url()) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

fn request(id: i64, nom: &str, salle: &str) -> FormationRequest {
    FormationRequest {
        formation: Formation {
            id,
            nom: nom.into(),
            salle: salle.into(),
        },
    }
}

fn row(id: i64, nom: &str, salle: &str) -> FormationRow {
    FormationRow {
        id,
        nom: nom.into(),
        salle: salle.into(),
    }
}

#[actix_rt::test]
async fn three_requests_make_three_rows() {
    let db = ScratchDb::new();
    let ctx = TestContext::new();
    let mut op = ctx
        .operation::<PostgresOperation>(db.url_settings())
        .await
        .unwrap();
    for (id, nom, salle) in [(1, "IRIS", "A"), (2, "Rust", "B"), (3, "SQL", "C")] {
        let reply = op.send(&request(id, nom, salle)).await.unwrap();
        let stored = reply.decode::<FormationStored>().unwrap();
        assert_eq!(stored.id, id);
        assert_eq!(
            stored.location,
            format!("postgres:127.0.0.1/{}.public.formation", db.name)
        );
    }
    assert_eq!(
        db.rows(),
        vec![row(1, "IRIS", "A"), row(2, "Rust", "B"), row(3, "SQL", "C")]
    );
    assert!(ctx
        .events()
        .iter()
        .any(|(l, t)| *l == Level::Info && t.contains("connected to PostgreSQL")));
}

#[actix_rt::test]
async fn the_same_id_twice_keeps_one_row_with_the_latest_values() {
    let db = ScratchDb::new();
    let mut op = TestContext::new()
        .operation::<PostgresOperation>(db.url_settings())
        .await
        .unwrap();
    op.send(&request(7, "Old", "A")).await.unwrap();
    op.send(&request(7, "New", "B")).await.unwrap();
    assert_eq!(db.rows(), vec![row(7, "New", "B")]);
}

#[actix_rt::test]
async fn a_batch_of_500_with_duplicate_ids_is_one_upsert() {
    let db = ScratchDb::new();
    let mut op = TestContext::new()
        .operation::<PostgresOperation>(db.url_settings())
        .await
        .unwrap();
    op.send(&request(5, "before", "X")).await.unwrap();
    // ids 0..300, ids 0..200 given twice: the later one (i + 300) must win.
    let batch: Vec<FormationRequest> = (0..500)
        .map(|i| request(i % 300, &format!("nom {i}"), &format!("salle {i}")))
        .collect();
    let replies = op.send_batch(&batch).await;
    assert_eq!(replies.len(), 500);
    for (i, reply) in replies.into_iter().enumerate() {
        let stored = reply.unwrap().decode::<FormationStored>().unwrap();
        assert_eq!(stored.id, i as i64 % 300);
    }
    let rows = db.rows();
    assert_eq!(rows.len(), 300);
    for r in rows {
        let last = if r.id < 200 { r.id + 300 } else { r.id };
        assert_eq!(
            r,
            row(r.id, &format!("nom {last}"), &format!("salle {last}"))
        );
    }
}

#[actix_rt::test]
async fn host_port_settings_reach_the_same_server_as_a_url() {
    let db = ScratchDb::new();
    let (user, password, host, port) = url_parts(&admin_url());
    let settings = Settings {
        host: host.clone(),
        port,
        database: db.name.clone(),
        user,
        password,
        connections: 2,
        ..Settings::default()
    };
    let mut op = TestContext::new()
        .operation::<PostgresOperation>(settings)
        .await
        .unwrap();
    let stored = op
        .send(&request(1, "Parts", "P"))
        .await
        .unwrap()
        .decode::<FormationStored>()
        .unwrap();
    assert_eq!(
        stored.location,
        format!("postgres:{host}/{}.public.formation", db.name)
    );

    let mut by_url = TestContext::new()
        .operation::<PostgresOperation>(db.url_settings())
        .await
        .unwrap();
    by_url.send(&request(2, "Url", "U")).await.unwrap();
    assert_eq!(db.rows(), vec![row(1, "Parts", "P"), row(2, "Url", "U")]);
}

#[actix_rt::test]
async fn an_unreachable_server_starts_then_fails_writes_after_the_failure_timeout() {
    let password = "sup3r-s3cret-pw";
    let settings = Settings {
        host: "127.0.0.1".into(),
        port: 1,
        password: password.into(),
        retry_interval_ms: 50,
        failure_timeout_ms: 300,
        ..Settings::default()
    };
    let ctx = TestContext::new();
    let mut op = ctx
        .operation::<PostgresOperation>(settings)
        .await
        .expect("on_init must not fail when PostgreSQL is down");
    let events = ctx.events();
    let warning = events
        .iter()
        .find(|(l, _)| *l == Level::Warn)
        .map(|(_, t)| t.clone())
        .expect("a warning about the unreachable server");
    assert!(warning.contains("127.0.0.1:1/DemoData"), "{warning}");
    assert!(!warning.contains(password), "{warning}");

    let start = Instant::now();
    let error = op.send(&request(1, "Lost", "L")).await.unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    let text = error.message;
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(text.contains("gave up after"), "{text}");
    assert!(!text.contains(password), "{text}");
    for (_, event) in ctx.events() {
        assert!(!event.contains(password), "{event}");
    }

    // A whole batch gets the error too, one reply per request.
    let replies = op
        .send_batch(&[request(1, "a", "b"), request(2, "c", "d")])
        .await;
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|r| r.is_err()));
}

/// A TCP proxy to the real server that drops every connection until `open` is set.
struct FlakyProxy {
    port: u16,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FlakyProxy {
    fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (open2, stop2) = (open.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if !open2.load(Ordering::Relaxed) {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(&upstream) {
                            pipe(client, server);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, open, stop }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copy both ways until either side closes.
fn pipe(client: TcpStream, server: TcpStream) {
    fn copy(mut from: TcpStream, mut to: TcpStream) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    }
    if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
        std::thread::spawn(move || copy(client, server));
        std::thread::spawn(move || copy(s2, c2));
    }
}

#[actix_rt::test]
async fn a_server_that_comes_up_during_the_retry_window_gets_the_row_once() {
    let db = ScratchDb::new();
    let (_, _, host, port) = url_parts(&admin_url());
    let proxy = FlakyProxy::start(format!("{host}:{port}"));
    let through_proxy = db.url.replacen(
        &format!("{host}:{port}"),
        &format!("127.0.0.1:{}", proxy.port),
        1,
    );
    assert_ne!(through_proxy, db.url);
    let settings = Settings {
        url: Some(through_proxy),
        retry_interval_ms: 100,
        failure_timeout_ms: 5000,
        connect_timeout_ms: 100,
        ..Settings::default()
    };
    let ctx = TestContext::new();
    let mut op = ctx.operation::<PostgresOperation>(settings).await.unwrap();
    assert!(ctx.events().iter().any(|(l, _)| *l == Level::Warn));

    let open = proxy.open.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        open.store(true, Ordering::Relaxed);
    });
    let start = Instant::now();
    let reply = op.send(&request(42, "Late", "L")).await;
    let took = start.elapsed();
    let stored = reply.unwrap().decode::<FormationStored>().unwrap();
    assert_eq!(stored.id, 42);
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(db.rows(), vec![row(42, "Late", "L")]);
    assert!(
        ctx.events()
            .iter()
            .any(|(l, t)| *l == Level::Info && t.contains("succeeded at try")),
        "{:?}",
        ctx.events()
    );
    // The table was created lazily, before that first write.
    drop(op);
}

#[actix_rt::test]
async fn errors_retrying_cannot_fix_are_replied_at_once_and_only_for_their_rows() {
    let db = ScratchDb::new();
    let settings = Settings {
        failure_timeout_ms: 10_000,
        ..db.url_settings()
    };
    let mut op = TestContext::new()
        .operation::<PostgresOperation>(settings)
        .await
        .unwrap();
    diesel::sql_query(
        "ALTER TABLE public.formation ADD CONSTRAINT no_cellar CHECK (salle <> 'cellar')",
    )
    .execute(&mut db.conn())
    .unwrap();

    let start = Instant::now();
    let error = op.send(&request(1, "Wine", "cellar")).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(error.message.contains("not retried"), "{}", error.message);

    let replies = op
        .send_batch(&[
            request(10, "ok", "A"),
            request(11, "bad", "cellar"),
            request(12, "nul", "x\0y"),
            request(13, "ok", "B"),
        ])
        .await;
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(replies[0].is_ok() && replies[3].is_ok(), "{replies:?}");
    assert!(replies[1]
        .as_ref()
        .unwrap_err()
        .message
        .contains("no_cellar"));
    assert!(replies[2].as_ref().unwrap_err().message.contains("NUL"));
    assert_eq!(db.rows(), vec![row(10, "ok", "A"), row(13, "ok", "B")]);
}

#[test]
fn settings_come_from_toml_with_defaults_and_refuse_unknown_keys() {
    let s: Settings = settings_from_toml("host = \"pg\"\npassword = \"pw\"").unwrap();
    assert_eq!(
        (s.host.as_str(), s.port, s.database.as_str()),
        ("pg", 5432, "DemoData")
    );
    assert_eq!(
        (s.connections, s.retry_interval_ms, s.failure_timeout_ms),
        (4, 1000, 15000)
    );
    assert_eq!(s.connect_timeout_ms, 3000);
    assert!(!format!("{s:?}").contains("pw\""));

    let e = settings_from_toml::<Settings>("host = \"pg\"\nhots = \"typo\"").unwrap_err();
    assert!(e.contains("hots"), "{e}");
}

#[actix_rt::test]
async fn bad_settings_are_refused_with_the_setting_named() {
    let ctx = TestContext::new();
    for (settings, setting) in [
        (
            Settings {
                connections: 0,
                ..Settings::default()
            },
            "connections",
        ),
        (
            Settings {
                url: Some("mysql://u:hidden-pw@h/d".into()),
                ..Settings::default()
            },
            "url",
        ),
    ] {
        let error = ctx
            .operation::<PostgresOperation>(settings)
            .await
            .err()
            .expect("refused");
        assert!(error.message.contains(setting), "{}", error.message);
        assert!(!error.message.contains("hidden-pw"), "{}", error.message);
    }
}

#[test]
fn register_adds_the_class() {
    let mut registry = interop::Registry::new();
    op_postgres::register(&mut registry);
    let class = registry.class(op_postgres::CLASS).expect("registered");
    assert_eq!(class.accepts, vec!["FormationRequest"]);
    assert!(registry.types().contains("FormationStored"));
}
