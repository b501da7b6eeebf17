use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use formation_messages::FormationStored;
use interop::testing::{settings_from_toml, TestContext, TestService};
use tempfile::TempDir;

use super::*;

const SAMPLE: &str = "id;nom;salle\n3;formation3;salle3\n4;formation4;salle4\n\
                      5;formation5;salle5\n6;formation6;salle6\n";

/// A temp folder with `in/` as the inbox, default settings.
fn setup() -> (TempDir, Settings) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings::new(dir.path().join("in"));
    (dir, settings)
}

/// A context whose `Router` stores every row.
fn router() -> TestContext {
    TestContext::new().reply_from("Router", |r: FormationRequest| FormationStored {
        id: r.formation.id,
        location: "test".into(),
    })
}

async fn service(ctx: &TestContext, settings: Settings) -> TestService<CsvService> {
    match ctx.service::<CsvService>(settings).await {
        Ok(s) => s,
        Err(e) => panic!("service did not start: {e}"),
    }
}

fn write(folder: &Path, name: &str, bytes: &[u8]) {
    fs::write(folder.join(name), bytes).expect("write test file");
}

/// Names of the regular files in a folder, sorted.
fn files(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(folder)
        .expect("list folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sent(ctx: &TestContext) -> Vec<Formation> {
    let mut rows: Vec<Formation> = ctx
        .sent_to::<FormationRequest>("Router")
        .into_iter()
        .map(|r| r.formation)
        .collect();
    rows.sort_by_key(|f| f.id);
    rows
}

fn formation(id: i64, nom: &str, salle: &str) -> Formation {
    Formation {
        id,
        nom: nom.into(),
        salle: salle.into(),
    }
}

fn moved(folder: &Path, name: &str) -> String {
    format!("moved to '{}'", folder.join(name).display())
}

#[actix_rt::test]
async fn tutorial_sample_is_sent_and_archived() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let archive = inbox.join("archive");
    assert!(archive.is_dir() && inbox.join("error").is_dir());
    write(&inbox, "formation.csv", SAMPLE.as_bytes());

    svc.process_input().await.expect("poll");

    assert_eq!(
        sent(&ctx),
        (3..=6)
            .map(|n| formation(n, &format!("formation{n}"), &format!("salle{n}")))
            .collect::<Vec<_>>()
    );
    // Each row is its own session.
    assert!(ctx.sent().iter().all(|s| s.session_id.is_none()));
    assert!(files(&inbox).is_empty());
    assert_eq!(files(&archive), ["formation.csv"]);
    assert_eq!(
        fs::read_to_string(archive.join("formation.csv")).expect("archived"),
        SAMPLE
    );
    assert_eq!(
        ctx.events(),
        [(
            Level::Info,
            format!(
                "file 'formation.csv': 4 rows read, 4 sent, 0 failed, 0 rejected; {}",
                moved(&archive, "formation.csv")
            )
        )]
    );

    // Never ingested twice.
    svc.process_input().await.expect("second poll");
    assert_eq!(ctx.sent().len(), 4);
}

#[actix_rt::test]
async fn columns_in_any_order_with_extra_column() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(
        &inbox,
        "f.csv",
        b" Salle ;commentaire; ID;NOM \nS1;whatever;10;N1\nS2;;11;N2\n",
    );

    svc.process_input().await.expect("poll");

    assert_eq!(
        sent(&ctx),
        [formation(10, "N1", "S1"), formation(11, "N2", "S2")]
    );
    assert_eq!(files(&inbox.join("archive")), ["f.csv"]);
}

#[actix_rt::test]
async fn bom_and_crlf() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(
        &inbox,
        "bom.csv",
        b"\xEF\xBB\xBFid;nom;salle\r\n1;a;b\r\n2;c;d\r\n",
    );

    svc.process_input().await.expect("poll");

    assert_eq!(sent(&ctx), [formation(1, "a", "b"), formation(2, "c", "d")]);
    assert_eq!(files(&inbox.join("archive")), ["bom.csv"]);
}

#[actix_rt::test]
async fn quoted_delimiter_and_non_ascii() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(
        &inbox,
        "q.csv",
        "id;nom;salle\n7;\"Formation; avancée\";\"Salle \"\"A\"\"\"\n\
         8;Café été;Zürich\n9;中文课程;教室一\n"
            .as_bytes(),
    );

    svc.process_input().await.expect("poll");

    assert_eq!(
        sent(&ctx),
        [
            formation(7, "Formation; avancée", "Salle \"A\""),
            formation(8, "Café été", "Zürich"),
            formation(9, "中文课程", "教室一"),
        ]
    );
}

#[actix_rt::test]
async fn other_delimiter() {
    let (dir, mut settings) = setup();
    settings.delimiter = ",".into();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(&inbox, "c.csv", b"id,nom,salle\n1,\"a,b\",c\n");

    svc.process_input().await.expect("poll");

    assert_eq!(sent(&ctx), [formation(1, "a,b", "c")]);
}

#[actix_rt::test]
async fn missing_column_goes_to_error_folder() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let error = inbox.join("error");
    write(&inbox, "nosalle.csv", b"id;nom;room\n1;a;b\n");

    svc.process_input().await.expect("poll");

    assert!(ctx.sent().is_empty());
    assert_eq!(files(&error), ["nosalle.csv"]);
    assert!(files(&inbox).is_empty());
    assert_eq!(
        ctx.events(),
        [(
            Level::Error,
            format!(
                "file 'nosalle.csv': header lacks the required column(s) salle \
                 (found: id, nom, room); {}",
                moved(&error, "nosalle.csv")
            )
        )]
    );
}

#[actix_rt::test]
async fn empty_files_go_to_error_folder() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let error = inbox.join("error");
    write(&inbox, "a_empty.csv", b"");
    write(&inbox, "b_blank.csv", b"\xEF\xBB\xBF\r\n\r\n");

    svc.process_input().await.expect("poll");

    assert!(ctx.sent().is_empty());
    assert_eq!(files(&error), ["a_empty.csv", "b_blank.csv"]);
    assert_eq!(
        ctx.events(),
        [
            (
                Level::Error,
                format!(
                    "file 'a_empty.csv': empty file (no header row); {}",
                    moved(&error, "a_empty.csv")
                )
            ),
            (
                Level::Error,
                format!(
                    "file 'b_blank.csv': empty file (no header row); {}",
                    moved(&error, "b_blank.csv")
                )
            ),
        ]
    );
}

#[actix_rt::test]
async fn header_only_file_is_archived() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(&inbox, "h.csv", b"id;nom;salle\n");

    svc.process_input().await.expect("poll");

    assert!(ctx.sent().is_empty());
    assert_eq!(files(&inbox.join("archive")), ["h.csv"]);
}

#[actix_rt::test]
async fn malformed_rows_are_skipped_with_their_line() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let archive = inbox.join("archive");
    write(
        &inbox,
        "bad.csv",
        b"id;nom;salle\n1;a;b\nx;bad;id\n3;c;d\n4;only-two\n5;e;f\n6;\xFF\xFE;g\n7;h;i\n",
    );

    svc.process_input().await.expect("poll");

    assert_eq!(
        sent(&ctx),
        [
            formation(1, "a", "b"),
            formation(3, "c", "d"),
            formation(5, "e", "f"),
            formation(7, "h", "i"),
        ]
    );
    assert_eq!(files(&archive), ["bad.csv"]);
    assert_eq!(
        ctx.events(),
        [
            (
                Level::Error,
                "file 'bad.csv' line 3: column 'id': \"x\" is not an integer; row skipped".into()
            ),
            (
                Level::Error,
                "file 'bad.csv' line 5: expected 3 fields as in the header, found 2; row skipped"
                    .into()
            ),
            (
                Level::Error,
                "file 'bad.csv' line 7: column 'nom': invalid UTF-8; row skipped".into()
            ),
            (
                Level::Info,
                format!(
                    "file 'bad.csv': 7 rows read, 4 sent, 0 failed, 3 rejected; {}",
                    moved(&archive, "bad.csv")
                )
            ),
        ]
    );
}

#[actix_rt::test]
async fn failed_sends_are_counted_and_the_file_archived() {
    let (dir, settings) = setup();
    let ctx = TestContext::new().reply_any("Router", |m| {
        let r = m.decode::<FormationRequest>()?;
        if r.formation.id % 2 == 0 {
            Err(HostError::new(format!("id {} refused", r.formation.id)))
        } else {
            AnyMessage::new(&FormationStored {
                id: r.formation.id,
                location: "test".into(),
            })
        }
    });
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let archive = inbox.join("archive");
    write(
        &inbox,
        "f.csv",
        b"id;nom;salle\n1;a;a\n2;b;b\n3;c;c\n4;d;d\n",
    );

    svc.process_input().await.expect("poll");

    assert_eq!(sent(&ctx).len(), 4);
    assert_eq!(files(&archive), ["f.csv"]);
    let mut events = ctx.events();
    let summary = events.pop();
    events.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        events,
        [
            (
                Level::Warn,
                "file 'f.csv' line 3: id 2 not delivered to 'Router': 'Router' replied with an \
                 error: id 2 refused"
                    .into()
            ),
            (
                Level::Warn,
                "file 'f.csv' line 5: id 4 not delivered to 'Router': 'Router' replied with an \
                 error: id 4 refused"
                    .into()
            ),
        ]
    );
    assert_eq!(
        summary,
        Some((
            Level::Info,
            format!(
                "file 'f.csv': 4 rows read, 2 sent, 2 failed, 0 rejected; {}",
                moved(&archive, "f.csv")
            )
        ))
    );
}

#[actix_rt::test]
async fn files_not_matching_file_spec_are_left_alone() {
    let (dir, mut settings) = setup();
    settings.file_spec = "formation_*.csv".into();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(&inbox, "notes.txt", SAMPLE.as_bytes());
    write(&inbox, "other.csv", SAMPLE.as_bytes());
    write(&inbox, "formation_1.csv.part", SAMPLE.as_bytes());
    write(&inbox, ".formation_2.csv", SAMPLE.as_bytes());
    write(&inbox, "formation_3.csv", SAMPLE.as_bytes());

    svc.process_input().await.expect("poll");

    assert_eq!(sent(&ctx).len(), 4);
    assert_eq!(
        files(&inbox),
        [
            ".formation_2.csv",
            "formation_1.csv.part",
            "notes.txt",
            "other.csv"
        ]
    );
    assert_eq!(files(&inbox.join("archive")), ["formation_3.csv"]);
}

#[actix_rt::test]
async fn files_are_read_in_name_order() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(&inbox, "b.csv", b"id;nom;salle\n2;b;b\n");
    write(&inbox, "a.csv", b"id;nom;salle\n1;a;a\n");
    write(&inbox, "c.csv", b"id;nom;salle\n3;c;c\n");

    svc.process_input().await.expect("poll");

    let ids: Vec<i64> = ctx
        .sent_to::<FormationRequest>("Router")
        .iter()
        .map(|r| r.formation.id)
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[actix_rt::test]
async fn archive_name_collision_gets_a_timestamp() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let archive = inbox.join("archive");
    write(&archive, "formation.csv", b"old");
    write(&inbox, "formation.csv", SAMPLE.as_bytes());

    svc.process_input().await.expect("poll");

    let names = files(&archive);
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "formation.csv");
    let renamed = &names[1];
    // formation_YYYYmmdd-HHMMSS-mmm.csv
    assert!(
        renamed.starts_with("formation_") && renamed.ends_with(".csv") && renamed.len() == 33,
        "{renamed}"
    );
    assert_eq!(
        fs::read_to_string(archive.join("formation.csv")).expect("old"),
        "old"
    );
    assert_eq!(
        fs::read_to_string(archive.join(renamed)).expect("new"),
        SAMPLE
    );
    assert!(files(&inbox).is_empty());
}

#[actix_rt::test]
async fn explicit_archive_and_error_folders() {
    let (dir, mut settings) = setup();
    settings.archive_path = Some(dir.path().join("done"));
    settings.error_path = Some(dir.path().join("bad"));
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(&inbox, "ok.csv", SAMPLE.as_bytes());
    write(&inbox, "ko.csv", b"nom;salle\nx;y\n");

    svc.process_input().await.expect("poll");

    assert_eq!(files(&dir.path().join("done")), ["ok.csv"]);
    assert_eq!(files(&dir.path().join("bad")), ["ko.csv"]);
    let ko = &ctx.events()[0];
    assert_eq!(ko.0, Level::Error);
    assert!(ko.1.contains("'ko.csv'") && ko.1.contains("id"), "{ko:?}");
}

#[actix_rt::test]
async fn hundred_thousand_rows_all_arrive() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let rows = 100_000i64;
    {
        let file = File::create(inbox.join("big.csv.part")).expect("create");
        let mut out = io::BufWriter::new(file);
        writeln!(out, "id;nom;salle").expect("write");
        for i in 1..=rows {
            writeln!(out, "{i};formation{i};salle{}", i % 10).expect("write");
        }
        out.flush().expect("flush");
    }
    // The rename convention: the file is taken once it has its final name.
    svc.process_input().await.expect("poll");
    assert!(ctx.sent().is_empty());
    fs::rename(inbox.join("big.csv.part"), inbox.join("big.csv")).expect("rename");

    svc.process_input().await.expect("poll");

    let mut ids: Vec<i64> = ctx
        .sent_to::<FormationRequest>("Router")
        .iter()
        .map(|r| r.formation.id)
        .collect();
    assert_eq!(ids.len(), rows as usize);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, (1..=rows).collect::<Vec<_>>());
    let events = ctx.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].0, Level::Info);
    assert!(
        events[0]
            .1
            .starts_with("file 'big.csv': 100000 rows read so far"),
        "{events:?}"
    );
    assert_eq!(
        events[1],
        (
            Level::Info,
            format!(
                "file 'big.csv': 100000 rows read, 100000 sent, 0 failed, 0 rejected; {}",
                moved(&inbox.join("archive"), "big.csv")
            )
        )
    );
}

/// A target that answers after a short sleep and records how many calls were open at once.
#[derive(Clone, Default)]
struct SlowTarget(Arc<Counters>);

#[derive(Default)]
struct Counters {
    open: std::sync::atomic::AtomicUsize,
    max_open: std::sync::atomic::AtomicUsize,
    calls: std::sync::atomic::AtomicI64,
}

impl interop::host::Dispatcher for SlowTarget {
    fn call(
        &self,
        _call: interop::host::Call,
    ) -> interop::host::BoxFuture<interop::host::CallReply> {
        let this = self.0.clone();
        let open = this.open.fetch_add(1, Ordering::SeqCst) + 1;
        this.max_open.fetch_max(open, Ordering::SeqCst);
        let id = this.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            this.open.fetch_sub(1, Ordering::SeqCst);
            interop::host::CallReply {
                session_id: id,
                request_id: id,
                result: AnyMessage::new(&interop::Ack {}).map_err(|e| SendError::Store(e.message)),
            }
        })
    }

    fn event(&self, _level: Level, _item: &str, _session_id: Option<i64>, _text: &str) {}

    fn item_enabled(&self, _item: &str) -> Option<bool> {
        Some(true)
    }

    fn embedded_db(&self) -> Option<interop::EmbeddedDb> {
        None
    }
}

#[actix_rt::test]
async fn in_flight_is_bounded_by_max_in_flight() {
    let (dir, mut settings) = setup();
    settings.max_in_flight = 8;
    let target = SlowTarget::default();
    let host = HostContext::new(
        "Csv",
        Arc::new(target.clone()) as Arc<dyn interop::host::Dispatcher>,
    );
    let ctx = ServiceContext::new(host);
    let mut svc = CsvService::new(settings, &ctx).expect("new");
    svc.on_init(&ctx).await.expect("init");
    let inbox = dir.path().join("in");
    let mut text = String::from("id;nom;salle\n");
    for i in 1..=2000 {
        text.push_str(&format!("{i};n{i};s{i}\n"));
    }
    write(&inbox, "w.csv", text.as_bytes());

    svc.on_process_input(&ctx).await.expect("poll");

    assert_eq!(target.0.calls.load(Ordering::SeqCst), 2000);
    assert_eq!(target.0.max_open.load(Ordering::SeqCst), 8);
    assert_eq!(target.0.open.load(Ordering::SeqCst), 0);
    assert_eq!(files(&inbox.join("archive")), ["w.csv"]);
}

#[actix_rt::test]
async fn stopping_mid_file_leaves_it_in_the_inbox() {
    let (dir, settings) = setup();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let ctx = TestContext::new().reply_from("Router", move |r: FormationRequest| {
        if r.formation.id == 2000 {
            flag.store(true, Ordering::SeqCst);
        }
        FormationStored {
            id: r.formation.id,
            location: "test".into(),
        }
    });
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let mut text = String::from("id;nom;salle\n");
    for i in 1..=10_000 {
        text.push_str(&format!("{i};n{i};s{i}\n"));
    }
    write(&inbox, "a.csv", text.as_bytes());
    write(&inbox, "b.csv", SAMPLE.as_bytes());

    let ctx_svc = svc.context().clone();
    svc.host
        .poll(&ctx_svc, &|| stop.load(Ordering::SeqCst))
        .await
        .expect("poll");

    let count = sent(&ctx).len();
    assert!(
        (2000..2000 + 1024 + 1).contains(&count),
        "{count} rows sent"
    );
    assert_eq!(files(&inbox), ["a.csv", "b.csv"]);
    assert!(files(&inbox.join("archive")).is_empty());
    let events = ctx.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, Level::Warn);
    assert!(
        events[0].1.starts_with("file 'a.csv': stopping: ")
            && events[0]
                .1
                .ends_with("the file is left in the inbox (not archived)"),
        "{events:?}"
    );
}

#[actix_rt::test]
async fn unknown_target_counts_as_failed() {
    let (dir, mut settings) = setup();
    settings.target = "Nowhere".into();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    write(&inbox, "f.csv", b"id;nom;salle\n1;a;b\n");

    svc.process_input().await.expect("poll");

    let events = ctx.events();
    assert_eq!(
        events[0],
        (
            Level::Warn,
            "file 'f.csv' line 2: id 1 not delivered to 'Nowhere': no item named 'Nowhere' in \
             this production"
                .into()
        )
    );
    assert!(events[1]
        .1
        .contains("1 rows read, 0 sent, 1 failed, 0 rejected"));
    assert_eq!(files(&inbox.join("archive")), ["f.csv"]);
}

#[test]
fn unknown_setting_is_refused() {
    let err = settings_from_toml::<Settings>("path = \"x\"\nbogus = 1").expect_err("refused");
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn settings_defaults() {
    let s = settings_from_toml::<Settings>("path = \"in\"").expect("parse");
    assert_eq!(s.file_spec, "*.csv");
    assert_eq!(s.delimiter, ";");
    assert_eq!(s.call_interval_ms, 5000);
    assert_eq!(s.target, "Router");
    assert_eq!(s.max_in_flight, 1024);
    let config = s.resolve().expect("valid");
    assert_eq!(config.archive, Path::new("in/archive"));
    assert_eq!(config.error, Path::new("in/error"));
    assert!(settings_from_toml::<Settings>("file_spec = \"*.csv\"").is_err());
}

#[test]
fn long_delimiter_is_refused() {
    let err =
        settings_from_toml::<Settings>("path = \"x\"\ndelimiter = \";;\"").expect_err("refused");
    assert!(err.contains("delimiter"), "{err}");
    for bad in ["", ";;", "§", "\""] {
        let mut s = Settings::new("x");
        s.delimiter = bad.into();
        let err = s.resolve().expect_err("refused");
        assert!(err.contains("'delimiter'"), "{err}");
    }
    let mut s = Settings::new("x");
    s.delimiter = "\t".into();
    assert_eq!(s.resolve().expect("tab").delimiter, b'\t');
}

#[actix_rt::test]
async fn bad_settings_are_refused_by_new() {
    let (dir, mut settings) = setup();
    settings.file_spec = "[".into();
    let ctx = router();
    match ctx.service::<CsvService>(settings).await {
        Ok(_) => panic!("accepted a bad file_spec"),
        Err(e) => assert!(e.message.contains("'file_spec'"), "{e}"),
    }
    let mut settings = Settings::new(dir.path().join("in"));
    settings.max_in_flight = 0;
    match ctx.service::<CsvService>(settings).await {
        Ok(_) => panic!("accepted max_in_flight = 0"),
        Err(e) => assert!(e.message.contains("'max_in_flight'"), "{e}"),
    }
}

#[actix_rt::test]
async fn folder_that_cannot_be_created_is_named() {
    let (dir, mut settings) = setup();
    let blocker = dir.path().join("file");
    fs::write(&blocker, b"x").expect("write");
    settings.archive_path = Some(blocker.join("archive"));
    match router().service::<CsvService>(settings).await {
        Ok(_) => panic!("started with an impossible archive folder"),
        Err(e) => {
            assert!(e.message.contains("'archive_path'"), "{e}");
            assert!(e.message.contains(&blocker.display().to_string()), "{e}");
        }
    }
}

#[actix_rt::test]
async fn archive_equal_to_inbox_is_refused() {
    let (dir, mut settings) = setup();
    settings.archive_path = Some(dir.path().join("in"));
    match router().service::<CsvService>(settings).await {
        Ok(_) => panic!("accepted the inbox as archive"),
        Err(e) => assert!(e.message.contains("'archive_path' is the inbox"), "{e}"),
    }
}

#[test]
fn register_adds_the_class_and_messages() {
    let mut registry = interop::Registry::new();
    register(&mut registry);
    let class = registry.class(CLASS).expect("registered");
    assert_eq!(class.targets, CsvService::targets());
    assert!(registry.types().contains("FormationRequest"));
    let table: toml::Table = toml::from_str("path = \"in\"").expect("toml");
    let effective = class.parse_settings(&table).expect("settings");
    assert_eq!(effective["target"], "Router");
}

#[actix_rt::test]
async fn row_events_are_capped_per_file() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let bad = MAX_ROW_EVENTS_PER_FILE + 5;
    let mut text = String::from("id;nom;salle\n");
    for i in 0..bad {
        text.push_str(&format!("x{i};n;s\n"));
    }
    text.push_str("1;n;s\n");
    write(&inbox, "noisy.csv", text.as_bytes());

    svc.process_input().await.expect("poll");

    let events = ctx.events();
    let errors = events.iter().filter(|e| e.0 == Level::Error).count() as u64;
    assert_eq!(errors, MAX_ROW_EVENTS_PER_FILE);
    assert_eq!(
        events.len() as u64,
        MAX_ROW_EVENTS_PER_FILE + 2,
        "cap warning + summary"
    );
    assert_eq!(events[events.len() - 2].0, Level::Warn);
    assert!(events[events.len() - 1].1.contains(&format!(
        "{} rows read, 1 sent, 0 failed, {bad} rejected",
        bad + 1
    )));
    assert_eq!(sent(&ctx), [formation(1, "n", "s")]);
}

#[actix_rt::test]
async fn failed_archive_move_is_retried_without_reading_again() {
    let (dir, settings) = setup();
    let ctx = router();
    let mut svc = service(&ctx, settings).await;
    let inbox = dir.path().join("in");
    let archive = inbox.join("archive");
    // The archive folder turns into a file: moves into it fail.
    fs::remove_dir(&archive).expect("remove archive");
    fs::write(&archive, b"not a folder").expect("block archive");
    write(&inbox, "formation.csv", SAMPLE.as_bytes());

    svc.process_input().await.expect("poll");
    assert_eq!(sent(&ctx).len(), 4);
    assert_eq!(files(&inbox), ["archive", "formation.csv"]);
    let events = ctx.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0],
        (
            Level::Info,
            "file 'formation.csv': 4 rows read, 4 sent, 0 failed, 0 rejected".into()
        )
    );
    assert_eq!(events[1].0, Level::Error);
    assert!(
        events[1]
            .1
            .starts_with("file 'formation.csv': cannot move it to archive_path '"),
        "{events:?}"
    );

    // Still blocked: not read again, nothing logged.
    svc.process_input().await.expect("poll");
    assert_eq!(sent(&ctx).len(), 4);
    assert_eq!(ctx.events().len(), 2);

    // Folder back: the move succeeds, still without reading the file again.
    fs::remove_file(&archive).expect("unblock");
    fs::create_dir(&archive).expect("archive folder");
    svc.process_input().await.expect("poll");
    assert_eq!(sent(&ctx).len(), 4);
    assert_eq!(files(&archive), ["formation.csv"]);
    assert_eq!(
        ctx.events()[2],
        (
            Level::Info,
            format!("file 'formation.csv' {}", moved(&archive, "formation.csv"))
        )
    );
}

/// A target that answers at once and keeps nothing (unlike `TestContext`, which records
/// every request), to measure the service's own memory.
#[derive(Clone, Default)]
struct CountingTarget(Arc<std::sync::atomic::AtomicI64>);

impl interop::host::Dispatcher for CountingTarget {
    fn call(
        &self,
        _call: interop::host::Call,
    ) -> interop::host::BoxFuture<interop::host::CallReply> {
        let id = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        let result = AnyMessage::new(&interop::Ack {}).map_err(|e| SendError::Store(e.message));
        Box::pin(async move {
            tokio::task::yield_now().await;
            interop::host::CallReply {
                session_id: id,
                request_id: id,
                result,
            }
        })
    }

    fn event(&self, _level: Level, _item: &str, _session_id: Option<i64>, _text: &str) {}

    fn item_enabled(&self, _item: &str) -> Option<bool> {
        Some(true)
    }

    fn embedded_db(&self) -> Option<interop::EmbeddedDb> {
        None
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `cargo test -p svc-csv --release -- --ignored million`: a 1,000,000-row file (about
/// 30 MB) is ingested with the peak RSS growing by far less than the file's size.
#[actix_rt::test]
#[ignore = "slow: 1,000,000 rows"]
async fn million_rows_in_bounded_memory() {
    let (dir, settings) = setup();
    let inbox = dir.path().join("in");
    fs::create_dir_all(&inbox).expect("inbox");
    let rows = 1_000_000i64;
    {
        let file = File::create(inbox.join("huge.csv.part")).expect("create");
        let mut out = io::BufWriter::new(file);
        writeln!(out, "id;nom;salle").expect("write");
        for i in 1..=rows {
            writeln!(out, "{i};formation numéro {i};salle {}", i % 10).expect("write");
        }
        out.flush().expect("flush");
    }
    fs::rename(inbox.join("huge.csv.part"), inbox.join("huge.csv")).expect("rename");
    let size_kib = fs::metadata(inbox.join("huge.csv")).expect("size").len() / 1024;
    let target = CountingTarget::default();
    let host = HostContext::new(
        "Csv",
        Arc::new(target.clone()) as Arc<dyn interop::host::Dispatcher>,
    );
    let ctx = ServiceContext::new(host);
    let mut svc = CsvService::new(settings, &ctx).expect("new");
    svc.on_init(&ctx).await.expect("init");
    let before = peak_rss_kib().unwrap_or(0);
    let started = std::time::Instant::now();

    svc.on_process_input(&ctx).await.expect("poll");

    let grown = peak_rss_kib().unwrap_or(0).saturating_sub(before);
    eprintln!(
        "1,000,000 rows ({size_kib} KiB) in {:?}, peak RSS grew by {grown} KiB",
        started.elapsed()
    );
    assert_eq!(target.0.load(Ordering::Relaxed), rows);
    assert!(grown < size_kib / 4, "peak RSS grew by {grown} KiB");
    assert_eq!(files(&inbox.join("archive")), ["huge.csv"]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Decode a whole file with the row reader; every outcome is a value, never a panic.
    fn decode(bytes: &[u8]) -> Result<(usize, usize), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("f.csv");
        fs::write(&path, bytes).map_err(|e| e.to_string())?;
        let mut reader = match open_csv(&path, b';')? {
            Opened::Rows(r) => r,
            _ => return Ok((0, 0)),
        };
        let (mut good, mut bad) = (0, 0);
        loop {
            let (rows, end) = reader.read_chunk(64);
            for row in rows {
                match row {
                    Row::Good { line, .. } | Row::Bad { line, .. } if line < 2 => {
                        return Err(format!("row at line {line}, before the header"))
                    }
                    Row::Good { .. } => good += 1,
                    Row::Bad { reason, .. } => {
                        assert!(!reason.is_empty());
                        bad += 1
                    }
                }
            }
            match end {
                ChunkEnd::More => {}
                ChunkEnd::Eof | ChunkEnd::Failed(_) => return Ok((good, bad)),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut bytes = b"id;nom;salle\n".to_vec();
            bytes.extend(body);
            let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
            let (good, bad) = decode(&bytes).map_err(TestCaseError::fail)?;
            prop_assert!(good + bad <= lines);
        }

        #[test]
        fn well_formed_rows_all_decode(rows in proptest::collection::vec(
            (any::<i64>(), "[^;\"\r\n]{0,12}", "[^;\"\r\n]{0,12}"), 0..40), crlf in any::<bool>()) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("id;nom;salle{eol}");
            for (id, nom, salle) in &rows {
                text.push_str(&format!("{id};{nom};{salle}{eol}"));
            }
            let (good, bad) = decode(text.as_bytes()).map_err(TestCaseError::fail)?;
            prop_assert_eq!((good, bad), (rows.len(), 0));
        }
    }
}
