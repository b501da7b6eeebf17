//! op-file: a business operation whose outbound adapter is a text file (the tutorial's
//! `FileOperation`). It appends one line per `FormationRequest`, `id : salle : nom`,
//! and replies only once the line is written to the file, so a completed reply means
//! the line is on disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use formation_messages::{FormationRequest, FormationStored};
use interop::prelude::*;

/// Settings of `op-file`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Folder of the output file; created if missing.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Name of the file lines are appended to.
    #[serde(default = "default_filename")]
    pub filename: String,
}

fn default_path() -> PathBuf {
    PathBuf::from("data/out")
}

fn default_filename() -> String {
    "formation.txt".to_string()
}

request_set! {
    /// What `op-file` accepts.
    pub enum FileRequest { Formation(FormationRequest) }
}

/// The file operation: one open, buffered file per instance.
pub struct FileOperation {
    file_path: PathBuf,
    /// `None` only while a batch is being written on the blocking pool.
    writer: Option<BufWriter<File>>,
}

impl FileOperation {
    fn line(request: &FormationRequest) -> String {
        let f = &request.formation;
        // One record per line: line breaks inside a field would split it.
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        format!("{} : {} : {}\n", f.id, clean(&f.salle), clean(&f.nom))
    }
}

impl BusinessOperation for FileOperation {
    const CLASS: &'static str = "op-file";
    type Settings = Settings;
    type Request = FileRequest;

    fn new(settings: Settings, _ctx: &HostContext) -> HostResult<Self> {
        if settings.filename.trim().is_empty() || settings.filename.contains('/') {
            return Err(HostError::new(format!(
                "setting 'filename': '{}' is not a plain file name",
                settings.filename
            )));
        }
        Ok(Self {
            file_path: settings.path.join(&settings.filename),
            writer: None,
        })
    }

    async fn on_init(&mut self, _ctx: &HostContext) -> HostResult<()> {
        let path = self.file_path.clone();
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().create(true).append(true).open(&path)
        })
        .await
        .map_err(|e| HostError::new(e.to_string()))?
        .map_err(|e| HostError::new(format!("cannot open {}: {e}", self.file_path.display())))?;
        self.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    async fn on_message(
        &mut self,
        ctx: &MessageContext,
        request: FileRequest,
    ) -> HostResult<AnyMessage> {
        let mut replies = self.on_batch(vec![(ctx.clone(), request)]).await;
        replies
            .pop()
            .unwrap_or_else(|| Err(HostError::new("no reply")))
    }

    async fn on_batch(
        &mut self,
        batch: Vec<(MessageContext, FileRequest)>,
    ) -> Vec<HostResult<AnyMessage>> {
        let Some(mut writer) = self.writer.take() else {
            let e = HostError::new(format!("{} is not open", self.file_path.display()));
            return batch.iter().map(|_| Err(e.clone())).collect();
        };
        let requests: Vec<FormationRequest> = batch
            .into_iter()
            .map(|(_, FileRequest::Formation(r))| r)
            .collect();
        let count = requests.len();
        let path = self.file_path.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut result = Ok(());
            for r in &requests {
                if let Err(e) = writer.write_all(Self::line(r).as_bytes()) {
                    result = Err(e);
                    break;
                }
            }
            let result = result.and_then(|()| writer.flush());
            (writer, requests, result)
        })
        .await;
        let (writer, requests, result) = match written {
            Ok(w) => w,
            Err(e) => {
                // The writer was lost with the task: reopen on the next batch.
                let e = HostError::new(format!("writing {}: {e}", path.display()));
                return vec![Err(e); count];
            }
        };
        self.writer = Some(writer);
        let location = path.display().to_string();
        requests
            .iter()
            .map(|r| match &result {
                Ok(()) => AnyMessage::new(&FormationStored {
                    id: r.formation.id,
                    location: location.clone(),
                }),
                Err(e) => Err(HostError::new(format!("writing {location}: {e}"))),
            })
            .collect()
    }

    async fn on_tear_down(&mut self, _ctx: &HostContext) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.flush();
        }
    }
}

/// Register `op-file` and the messages it uses.
pub fn register(registry: &mut Registry) {
    formation_messages::register(registry);
    registry.operation::<FileOperation>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use formation_messages::Formation;
    use interop::testing::{settings_from_toml, TestContext};

    fn request(id: i64, nom: &str, salle: &str) -> FormationRequest {
        FormationRequest {
            formation: Formation {
                id,
                nom: nom.into(),
                salle: salle.into(),
            },
        }
    }

    fn settings(dir: &std::path::Path) -> Settings {
        Settings {
            path: dir.join("out"),
            filename: "formation.txt".into(),
        }
    }

    #[actix_rt::test]
    async fn each_request_appends_one_line_on_disk_before_the_reply() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = TestContext::new();
        let mut op = ctx.operation::<FileOperation>(settings(dir.path())).await.unwrap();
        let reply = op.send(&request(3, "formation3", "salle3")).await.unwrap();
        assert_eq!(reply.decode::<FormationStored>().unwrap().id, 3);
        // Read while the operation still runs: the reply means the line is there.
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        assert_eq!(text, "3 : salle3 : formation3\n");
        op.send(&request(4, "Café ü", "Salle; B")).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        assert_eq!(text, "3 : salle3 : formation3\n4 : Salle; B : Café ü\n");
    }

    #[actix_rt::test]
    async fn a_batch_is_written_in_order_with_one_reply_each() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = TestContext::new();
        let mut op = ctx.operation::<FileOperation>(settings(dir.path())).await.unwrap();
        let batch: Vec<_> = (1..=100).map(|i| request(i, "n", "s")).collect();
        let replies = op.send_batch(&batch).await;
        assert_eq!(replies.len(), 100);
        assert!(replies.iter().all(|r| r.is_ok()));
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        let ids: Vec<i64> = text
            .lines()
            .map(|l| l.split(" : ").next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    }

    #[actix_rt::test]
    async fn line_breaks_inside_fields_do_not_split_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut op = TestContext::new()
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        op.send(&request(7, "two\nlines", "room\r\n2")).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/formation.txt")).unwrap();
        assert_eq!(text, "7 : room  2 : two lines\n");
    }

    #[actix_rt::test]
    async fn an_unwritable_folder_fails_on_init_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), "x").unwrap();
        let s = Settings {
            path: dir.path().join("blocker"),
            filename: "f.txt".into(),
        };
        let err = match TestContext::new().operation::<FileOperation>(s).await {
            Err(e) => e,
            Ok(_) => panic!("a file as folder must fail"),
        };
        assert!(err.message.contains("blocker"), "{err}");
    }

    #[actix_rt::test]
    async fn other_message_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut op = TestContext::new()
            .operation::<FileOperation>(settings(dir.path()))
            .await
            .unwrap();
        let err = op.send(&Ack {}).await.unwrap_err();
        assert!(err.message.contains("unexpected message type 'Ack'"), "{err}");
        assert!(err.message.contains("FormationRequest"), "{err}");
    }

    #[test]
    fn settings_have_defaults_and_refuse_unknown_keys() {
        let s: Settings = settings_from_toml("").unwrap();
        assert_eq!(s.filename, "formation.txt");
        let err = settings_from_toml::<Settings>("filenam = \"x\"").unwrap_err();
        assert!(err.contains("filenam"), "{err}");
    }
}
