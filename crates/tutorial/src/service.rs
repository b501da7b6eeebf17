//! Chapter 5: the smallest `ServiceCSV`, a business service whose inbound adapter polls
//! a folder: every `call_interval_ms` it reads the `*.csv` files there (`id;nom;salle`)
//! and sends each row to the router as a `FormationRequest`, each row its own session.

// ANCHOR: settings
use std::path::{Path, PathBuf};
use std::time::Duration;

use formation_messages::{Formation, FormationRequest};
use interop::prelude::*;

/// Settings of `tutorial-csv`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Inbox folder polled for `*.csv` files; required.
    pub path: PathBuf,
    /// How often the inbox is polled, in milliseconds.
    #[serde(default = "default_call_interval_ms")]
    pub call_interval_ms: u64,
    /// Item the `FormationRequest`s are sent to.
    #[serde(default = "default_target")]
    pub target: String,
}

fn default_call_interval_ms() -> u64 {
    5000
}

fn default_target() -> String {
    "Router".into()
}
// ANCHOR_END: settings

// ANCHOR: host
/// The CSV service.
pub struct CsvService {
    settings: Settings,
}

impl BusinessService for CsvService {
    const CLASS: &'static str = "tutorial-csv";
    type Settings = Settings;

    fn targets() -> Vec<Target> {
        vec![Target::sends::<FormationRequest>("target")]
    }

    fn new(settings: Settings, _ctx: &HostContext) -> HostResult<Self> {
        if settings.call_interval_ms == 0 {
            return Err(HostError::new("setting 'call_interval_ms' must be above 0"));
        }
        Ok(Self { settings })
    }

    // The inbound adapter: `on_process_input` is called on this period.
    fn call_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.settings.call_interval_ms))
    }

    async fn on_process_input(&mut self, ctx: &ServiceContext) -> HostResult<()> {
        let inbox = self.settings.path.clone();
        let files = crate::blocking(move || csv_files(&inbox)).await??;
        for file in files {
            let name = file.display().to_string();
            let rows = match crate::blocking(move || read_and_archive(&file)).await? {
                Ok(rows) => rows,
                Err(e) => {
                    ctx.error(&format!("{name}: {e}; renamed to .error"));
                    continue;
                }
            };
            for formation in rows {
                let id = formation.id;
                let request = FormationRequest { formation };
                // From a service, every request starts a new session.
                if let Err(e) = ctx.send_request_sync(&self.settings.target, &request).await {
                    ctx.error(&format!("{name}: formation {id}: {e}"));
                }
            }
        }
        Ok(())
    }
}
// ANCHOR_END: host

// ANCHOR: files
/// The `*.csv` files of the inbox, in name order.
fn csv_files(inbox: &Path) -> HostResult<Vec<PathBuf>> {
    let io = |e: std::io::Error| HostError::new(format!("inbox {}: {e}", inbox.display()));
    std::fs::create_dir_all(inbox).map_err(io)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(inbox).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Read every row of a file, then rename it to `.csv.done` (`.csv.error` when a row
/// does not parse, and then no row is sent), so that each file is read once.
fn read_and_archive(file: &Path) -> Result<Vec<Formation>, String> {
    let rows = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_path(file)
        .and_then(|mut reader| reader.deserialize().collect::<Result<Vec<Formation>, _>>())
        .map_err(|e| e.to_string());
    let done = file.with_extension(if rows.is_ok() {
        "csv.done"
    } else {
        "csv.error"
    });
    std::fs::rename(file, &done).map_err(|e| format!("cannot rename it: {e}"))?;
    rows
}
// ANCHOR_END: files

#[cfg(test)]
mod tests {
    use super::*;
    use formation_messages::FormationStored;
    use interop::testing::TestContext;

    // ANCHOR: test
    #[actix_rt::test]
    async fn each_row_is_sent_to_the_router_as_its_own_session() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "id;nom;salle\n3;formation3;salle3\n4;formation4;salle4\n";
        std::fs::write(dir.path().join("formation.csv"), csv).unwrap();
        let ctx = TestContext::new().reply_from("Router", |r: FormationRequest| FormationStored {
            id: r.formation.id,
            location: "stub".into(),
        });
        let settings = Settings {
            path: dir.path().to_path_buf(),
            call_interval_ms: 1000,
            target: "Router".into(),
        };
        let mut service = ctx.service::<CsvService>(settings).await.unwrap();

        service.process_input().await.unwrap();

        let sent = ctx.sent();
        let ids: Vec<i64> = ctx
            .sent_to::<FormationRequest>("Router")
            .iter()
            .map(|r| r.formation.id)
            .collect();
        assert_eq!(ids, [3, 4]);
        // `None`: each request started a new session.
        assert!(sent.iter().all(|s| s.session_id.is_none()));
        assert!(dir.path().join("formation.csv.done").exists());
        service.process_input().await.unwrap();
        assert_eq!(ctx.sent().len(), 2, "a file is read once");
    }
    // ANCHOR_END: test

    #[actix_rt::test]
    async fn a_bad_row_sends_nothing_and_renames_the_file_to_error() {
        let dir = tempfile::tempdir().unwrap();
        let csv = "id;nom;salle\n3;formation3;salle3\nfour;formation4;salle4\n";
        std::fs::write(dir.path().join("bad.csv"), csv).unwrap();
        let ctx = TestContext::new().reply_from("Router", |r: FormationRequest| r);
        let settings = Settings {
            path: dir.path().to_path_buf(),
            call_interval_ms: 1000,
            target: "Router".into(),
        };
        let mut service = ctx.service::<CsvService>(settings).await.unwrap();
        service.process_input().await.unwrap();
        assert!(ctx.sent().is_empty());
        assert!(dir.path().join("bad.csv.error").exists());
        let events = ctx.events();
        assert!(
            events
                .iter()
                .any(|(_, text)| text.contains("bad.csv") && text.contains("line: 3")),
            "{events:?}"
        );
    }

    #[actix_rt::test]
    async fn a_zero_interval_is_refused() {
        let settings = Settings {
            path: PathBuf::from("in"),
            call_interval_ms: 0,
            target: "Router".into(),
        };
        let err = match TestContext::new().service::<CsvService>(settings).await {
            Err(e) => e,
            Ok(_) => panic!("0 ms accepted"),
        };
        assert!(err.message.contains("call_interval_ms"), "{err}");
    }
}
