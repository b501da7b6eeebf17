//! The formation production end to end: CSV files dropped in the inbox flow through the
//! router into the text file, the embedded SQLite and a real PostgreSQL; bad files and a
//! PostgreSQL that is down are handled without losing or inventing rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use interop::store::{EventFilter, MessageFilter};
use interop::{Production, ProductionConfig};

/// A scratch PostgreSQL database, dropped at the end of the test.
struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    fn new(tag: &str) -> Self {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("interop_formation_{tag}_{}", std::process::id());
        let mut c = PgConnection::establish(&admin).expect("PostgreSQL at DATABASE_URL");
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut c)
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        Self { admin, name, url }
    }

    fn count(&self) -> i64 {
        let mut c = PgConnection::establish(&self.url).unwrap();
        diesel::sql_query("SELECT count(*) AS n FROM formation")
            .get_result::<Count>(&mut c)
            .map(|r| r.n)
            .unwrap_or(-1)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut c);
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    production: Production,
}

impl Setup {
    async fn start(pg_url: Option<&str>, pg_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (enabled, url) = match pg_url {
            Some(u) => (true, u.to_string()),
            None => (false, "postgres://nobody@127.0.0.1:1/none".to_string()),
        };
        let text = format!(
            r#"
[production]
name = "Formation test"
data_dir = "{root}/data"
default_timeout_ms = 20000

[[item]]
name = "ServiceCSV"
class = "svc-csv"
[item.settings]
path = "{root}/in"
archive_path = "{root}/archive"
error_path = "{root}/error"
call_interval_ms = 50

[[item]]
name = "Router"
class = "proc-router"
[item.settings]
postgres_rule = "always"

[[item]]
name = "FileOperation"
class = "op-file"
[item.settings]
path = "{root}/out"

[[item]]
name = "IrisOperation"
class = "op-iris"

[[item]]
name = "PostgresOperation"
class = "op-postgres"
enabled = {enabled}
[item.settings]
url = "{url}"
{pg_extra}
"#,
            root = root.display()
        );
        let config = ProductionConfig::parse(&text, "formation-test.toml").unwrap();
        let production = Production::start(config, Arc::new(production::registry()), None)
            .await
            .unwrap();
        Setup {
            _dir: dir,
            root,
            production,
        }
    }

    /// Drop a file into the inbox the way writers should: write, then rename.
    fn drop_file(&self, name: &str, content: &[u8]) {
        let part = self.root.join(format!("{name}.part"));
        std::fs::create_dir_all(self.root.join("in")).unwrap();
        std::fs::write(&part, content).unwrap();
        std::fs::rename(&part, self.root.join("in").join(name)).unwrap();
    }

    async fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        while !cond(self) {
            assert!(started.elapsed() < timeout, "timed out waiting for {what}");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn in_folder(&self, folder: &str, name: &str) -> bool {
        self.root.join(folder).join(name).exists()
    }

    fn file_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("out/formation.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn training_count(&self) -> i64 {
        let db = self.production.embedded_db().clone();
        db.read_blocking(|c| {
            diesel::sql_query("SELECT count(*) AS n FROM training")
                .get_result::<Count>(c)
                .map(|r| r.n)
        })
        .unwrap()
    }

    async fn events(&self, level: &str) -> Vec<String> {
        self.production.store().flush().await.unwrap();
        self.production
            .store()
            .events(&EventFilter {
                level: Some(level.into()),
                limit: Some(5000),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.text)
            .collect()
    }
}

fn sample() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/samples/formation.csv"))
        .unwrap()
}

fn generated(first: i64, n: i64) -> Vec<u8> {
    let mut s = String::from("id;nom;salle\n");
    for i in first..first + n {
        s.push_str(&format!("{i};Formation n°{i};Salle {}\n", i % 7));
    }
    s.into_bytes()
}

#[actix_rt::test]
async fn csv_rows_reach_the_file_the_embedded_db_and_postgres_with_one_trace_each() {
    let pg = ScratchDb::new("e2e");
    let s = Setup::start(Some(&pg.url), "").await;
    s.drop_file("formation.csv", &sample());
    s.drop_file("big.csv", &generated(1000, 3000));
    s.wait_for("both files archived", Duration::from_secs(60), |s| {
        s.in_folder("archive", "formation.csv") && s.in_folder("archive", "big.csv")
    })
    .await;

    let lines = s.file_lines();
    assert_eq!(lines.len(), 3004);
    assert!(
        lines.contains(&"3 : salle3 : formation3".to_string()),
        "{:?}",
        &lines[..4]
    );
    assert_eq!(s.training_count(), 3004);
    assert_eq!(pg.count(), 3004);

    // One session per row, each with the expected hops in order.
    let p = &s.production;
    p.store().flush().await.unwrap();
    let firsts = p
        .store()
        .messages(&MessageFilter {
            source: Some("ServiceCSV".into()),
            limit: Some(10),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(firsts.len(), 10);
    for first in firsts {
        let trace = p.store().trace(first.session_id).unwrap();
        let hops: Vec<(String, String, String)> = trace
            .iter()
            .map(|m| (m.source.clone(), m.target.clone(), m.type_name.clone()))
            .collect();
        let h = |a: &str, b: &str, t: &str| (a.to_string(), b.to_string(), t.to_string());
        assert_eq!(
            hops,
            [
                h("ServiceCSV", "Router", "FormationRequest"),
                h("Router", "FileOperation", "FormationRequest"),
                h("FileOperation", "Router", "FormationStored"),
                h("Router", "IrisOperation", "TrainingIrisRequest"),
                h("IrisOperation", "Router", "TrainingIrisResponse"),
                h("Router", "PostgresOperation", "FormationRequest"),
                h("PostgresOperation", "Router", "FormationStored"),
                h("Router", "ServiceCSV", "FormationResponse"),
            ]
        );
        assert!(trace.iter().all(|m| m.status == "completed"));
    }
    let info = s.events("info").await;
    assert!(
        info.iter().any(|e| e.contains("big.csv")
            && e.contains("3000 rows read")
            && e.contains("3000 sent")),
        "{info:?}"
    );
    p.stop().await;
}

#[actix_rt::test]
async fn bad_files_and_rows_are_counted_and_reported_exactly() {
    let s = Setup::start(None, "").await;
    s.drop_file("missing.csv", b"id;nom\n1;x\n");
    s.drop_file("empty.csv", b"");
    s.drop_file(
        "mixed.csv",
        "\u{feff}salle;id;nom\r\nA;10;ok\r\nB;eleven;bad id\r\nC;12\r\nD;13;\"quoted; with ;\"\r\nE;14;Ünïcødé 中文\r\n".as_bytes(),
    );
    s.wait_for("files handled", Duration::from_secs(30), |s| {
        s.in_folder("error", "missing.csv")
            && s.in_folder("error", "empty.csv")
            && s.in_folder("archive", "mixed.csv")
    })
    .await;
    // Rows are separate sessions sent concurrently: the file has them in arrival order.
    let mut lines = s.file_lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            "10 : A : ok",
            "13 : D : quoted; with ;",
            "14 : E : Ünïcødé 中文"
        ]
    );
    assert_eq!(s.training_count(), 3);
    let errors = s.events("error").await;
    let has = |needle: &[&str]| errors.iter().any(|e| needle.iter().all(|n| e.contains(n)));
    assert!(has(&["missing.csv", "salle"]), "{errors:?}");
    assert!(has(&["empty.csv"]), "{errors:?}");
    assert!(has(&["mixed.csv", "line 3"]), "{errors:?}");
    assert!(has(&["mixed.csv", "line 4"]), "{errors:?}");
    s.production.stop().await;
}

#[actix_rt::test]
async fn with_postgres_down_rows_reach_the_other_sinks_and_postgres_sends_end_as_errors() {
    // Nothing listens on port 1: every connection is refused.
    let s = Setup::start(
        Some("postgres://demo:s3cret@127.0.0.1:1/DemoData"),
        "retry_interval_ms = 50\nfailure_timeout_ms = 300",
    )
    .await;
    s.drop_file("formation.csv", &sample());
    s.wait_for("file archived", Duration::from_secs(30), |s| {
        s.in_folder("archive", "formation.csv")
    })
    .await;
    assert_eq!(s.file_lines().len(), 4);
    assert_eq!(s.training_count(), 4);
    let p = &s.production;
    p.store().flush().await.unwrap();
    let failed = p
        .store()
        .messages(&MessageFilter {
            target: Some("PostgresOperation".into()),
            status: Some("error".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        failed.len(),
        4,
        "each Postgres request ends as an error, resendable"
    );
    for m in &failed {
        let text = m.error_text.clone().unwrap_or_default();
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("s3cret"), "password leaked: {text}");
    }
    let warns = s.events("warn").await;
    assert!(warns.iter().all(|w| !w.contains("s3cret")));
    assert!(p.item("PostgresOperation").unwrap().view().errors >= 4);
    // Nor in what the API (and so the portal) shows of the item, nor anywhere in the log.
    let server = production::server::serve_on(p.clone(), "127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.addr);
    let pages: Vec<String> = tokio::task::spawn_blocking(move || {
        ["/api/production", "/api/log?limit=1000", "/metrics"]
            .iter()
            .map(|path| {
                ureq::get(&format!("{base}{path}"))
                    .call()
                    .unwrap()
                    .into_string()
                    .unwrap()
            })
            .collect()
    })
    .await
    .unwrap();
    assert!(
        pages[0].contains("PostgresOperation") && pages[0].contains("***"),
        "{}",
        pages[0]
    );
    for page in &pages {
        assert!(!page.contains("s3cret"), "password shown: {page}");
    }
    server.stop().await;
    p.stop().await;
}

/// A TCP proxy to the local PostgreSQL that the test can cut: while down it drops every
/// open connection and refuses new ones.
struct Proxy {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect("127.0.0.1:5432") else {
                    continue;
                };
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        open2.lock().unwrap().push(c);
                    }
                }
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, up, open }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    fn url(&self, db: &ScratchDb) -> String {
        let name = db.url.rsplit('/').next().unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

#[actix_rt::test]
async fn a_postgres_outage_shorter_than_the_failure_timeout_loses_nothing() {
    let pg = ScratchDb::new("outage");
    let proxy = Proxy::start();
    let s = Setup::start(
        Some(&proxy.url(&pg)),
        "retry_interval_ms = 100\nfailure_timeout_ms = 20000\nconnect_timeout_ms = 1000",
    )
    .await;
    s.drop_file("rows.csv", &generated(1, 2000));
    s.wait_for("some rows in PostgreSQL", Duration::from_secs(30), |_| {
        pg.count() > 0
    })
    .await;
    proxy.set_up(false);
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_up(true);
    s.wait_for("file archived", Duration::from_secs(60), |s| {
        s.in_folder("archive", "rows.csv")
    })
    .await;
    assert_eq!(pg.count(), 2000);
    assert_eq!(s.training_count(), 2000);
    assert_eq!(s.file_lines().len(), 2000);
    let p = &s.production;
    p.store().flush().await.unwrap();
    let failed = p
        .store()
        .messages(&MessageFilter {
            status: Some("error".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    p.stop().await;
}

#[actix_rt::test]
async fn rows_that_outlast_the_failure_timeout_end_as_errors_and_a_resend_delivers_them() {
    let pg = ScratchDb::new("resend");
    let proxy = Proxy::start();
    let s = Setup::start(
        Some(&proxy.url(&pg)),
        "retry_interval_ms = 50\nfailure_timeout_ms = 400\nconnect_timeout_ms = 300",
    )
    .await;
    proxy.set_up(false);
    s.drop_file("rows.csv", &generated(1, 20));
    s.wait_for("file archived", Duration::from_secs(60), |s| {
        s.in_folder("archive", "rows.csv")
    })
    .await;
    assert_eq!(s.training_count(), 20, "the other sinks go on");
    let p = &s.production;
    p.store().flush().await.unwrap();
    let failed = p
        .store()
        .messages(&MessageFilter {
            target: Some("PostgresOperation".into()),
            status: Some("error".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(failed.len(), 20);
    let alerts = s.events("alert").await;
    assert!(!alerts.is_empty(), "the failure raised an alert");

    proxy.set_up(true);
    // The operator resends every failed PostgreSQL request at once, over the API.
    let server = production::server::serve_on(p.clone(), "127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/messages/resend", server.addr);
    let answer: serde_json::Value = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .send_json(serde_json::json!({"target": "PostgresOperation", "status": "error"}))
            .unwrap()
            .into_json()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        (answer["resent"].as_i64(), answer["ok"].as_i64()),
        (Some(20), Some(20)),
        "{answer}"
    );
    assert_eq!(pg.count(), 20);
    server.stop().await;
    p.stop().await;
}

mod overload {
    use super::*;
    use formation_messages::{TrainingIrisRequest, TrainingIrisResponse};
    use interop::prelude::*;

    #[derive(Clone, Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SlowSettings {
        sleep_ms: u64,
    }

    request_set! {
        pub enum SlowRequest { Iris(TrainingIrisRequest) }
    }

    /// An embedded-DB stand-in that takes `sleep_ms` per message and keeps the ids.
    pub struct SlowIris {
        sleep: Duration,
        db: interop::EmbeddedDb,
    }

    impl BusinessOperation for SlowIris {
        const CLASS: &'static str = "test-slow-iris";
        type Settings = SlowSettings;
        type Request = SlowRequest;
        fn new(s: SlowSettings, ctx: &HostContext) -> HostResult<Self> {
            Ok(SlowIris {
                sleep: Duration::from_millis(s.sleep_ms),
                db: ctx.embedded_db()?,
            })
        }
        async fn on_message(
            &mut self,
            _: &MessageContext,
            r: SlowRequest,
        ) -> HostResult<AnyMessage> {
            let SlowRequest::Iris(r) = r;
            actix_rt::time::sleep(self.sleep).await;
            let t = r.training;
            self.db
                .write(move |c| {
                    diesel::sql_query(
                        "INSERT OR REPLACE INTO training (id, name, room) VALUES (?, ?, ?)",
                    )
                    .bind::<BigInt, _>(t.id)
                    .bind::<diesel::sql_types::Text, _>(t.name)
                    .bind::<diesel::sql_types::Text, _>(t.room)
                    .execute(c)
                })
                .await?;
            AnyMessage::new(&TrainingIrisResponse {
                ok: true,
                flag: false,
            })
        }
    }

    fn peak_rss_mib() -> f64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    #[actix_rt::test]
    async fn a_flood_on_a_slow_operation_stays_bounded_loses_nothing_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let text = format!(
            r#"[production]
name = "Overload"
data_dir = "{root}/data"
default_timeout_ms = 120000
[[item]]
name = "ServiceCSV"
class = "svc-csv"
[item.settings]
path = "{root}/in"
call_interval_ms = 50
max_in_flight = 256
[[item]]
name = "RestService"
class = "svc-rest"
[item.settings]
max_in_flight = 32
[[item]]
name = "Router"
class = "proc-router"
[item.settings]
postgres_rule = "never"
iris_target = "SlowIris"
[[item]]
name = "FileOperation"
class = "op-file"
[item.settings]
path = "{root}/out"
[[item]]
name = "IrisOperation"
class = "op-iris"
[[item]]
name = "SlowIris"
class = "test-slow-iris"
[item.settings]
sleep_ms = 1
[[item]]
name = "PostgresOperation"
class = "op-postgres"
enabled = false
"#
        );
        let mut registry = production::registry();
        registry.operation::<SlowIris>();
        let config = ProductionConfig::parse(&text, "overload.toml").unwrap();
        let p = Production::start(config, Arc::new(registry), None)
            .await
            .unwrap();
        let server = production::server::serve_on(p.clone(), "127.0.0.1:0").unwrap();
        let url = format!("http://{}/training/", server.addr);

        // CSV: 3000 rows; REST: 48 clients posting as fast as they can for 3 s.
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::write(dir.path().join("rows.part"), generated(1, 3000)).unwrap();
        std::fs::rename(dir.path().join("rows.part"), dir.path().join("in/rows.csv")).unwrap();
        let clients: Vec<_> = (0..48)
            .map(|t| {
                let url = url.clone();
                tokio::task::spawn_blocking(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(150))
                        .build();
                    let (mut created, mut busy, mut other) = (Vec::new(), 0, Vec::new());
                    let until = Instant::now() + Duration::from_secs(3);
                    let mut n = 0;
                    while Instant::now() < until {
                        n += 1;
                        let id = 100_000 + t * 10_000 + n;
                        let body = serde_json::json!({"id": id, "nom": "flood", "salle": "S"});
                        match agent.post(&url).send_json(body) {
                            Ok(r) if r.status() == 201 => created.push(id),
                            Err(ureq::Error::Status(503, r)) => {
                                assert_eq!(r.header("Retry-After"), Some("1"));
                                busy += 1;
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Ok(r) => other.push(r.status()),
                            Err(ureq::Error::Status(code, _)) => other.push(code),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (created, busy, other)
                })
            })
            .collect();
        let mut max_queued = 0;
        let sampler_until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < sampler_until {
            max_queued = max_queued.max(p.item("SlowIris").unwrap().view().queued);
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut created, mut busy) = (Vec::new(), 0);
        for c in clients {
            let (ok, b, other) = c.await.unwrap();
            assert!(other.is_empty(), "statuses other than 201/503: {other:?}");
            created.extend(ok);
            busy += b;
        }
        // Drains once the load stops: every accepted row is stored.
        let expected = 3000 + created.len() as i64;
        let s = Instant::now();
        while count_training(&p) < expected {
            assert!(s.elapsed() < Duration::from_secs(120), "did not drain");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "overload: {} REST rows accepted, {busy} answered 503 busy, 3000 CSV rows; \
             max queue at the slow operation {max_queued}; peak RSS {:.1} MiB",
            created.len(),
            peak_rss_mib()
        );
        assert!(busy > 0, "the flood never met the REST limit");
        // 256 CSV + 32 REST sessions in flight at most: the queue cannot grow past them.
        assert!(max_queued <= 256 + 32, "queue grew to {max_queued}");
        assert_eq!(count_training(&p), expected);
        server.stop().await;
        p.stop().await;
    }

    fn count_training(p: &Production) -> i64 {
        p.embedded_db()
            .read_blocking(|c| {
                diesel::sql_query("SELECT count(*) AS n FROM training")
                    .get_result::<Count>(c)
                    .map(|r| r.n)
            })
            .unwrap_or(-1)
    }
}

#[test]
fn a_csv_service_cannot_run_two_instances_on_one_inbox() {
    let text = "[production]\nname = \"x\"\n[[item]]\nname = \"ServiceCSV\"\nclass = \"svc-csv\"\npool_size = 2\n[item.settings]\npath = \"in\"\n";
    let config = ProductionConfig::parse(text, "t.toml").unwrap();
    let errors = production::registry().validate(&config).err().unwrap();
    let text = errors[0].to_string();
    assert!(
        text.contains("ServiceCSV") && text.contains("pool_size = 2"),
        "{text}"
    );
}

#[test]
fn the_binary_refuses_an_open_api_on_all_interfaces_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[production]\nname = \"x\"\ndata_dir = \"{}\"\nhttp = \"0.0.0.0:0\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_production"))
        .args(["--config", &config.display().to_string()])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:0") && err.contains("api_token"),
        "{err}"
    );
    assert!(
        !dir.path().join("data/production.db").exists(),
        "nothing was started"
    );
}
