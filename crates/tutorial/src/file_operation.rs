//! Chapter 3: the smallest `FileOperation`, a business operation whose outbound adapter
//! is a text file: one line `id : salle : nom` per `FormationRequest`. The shipped
//! `op-file` does the same with one open file per instance and a flush per batch.

// ANCHOR: settings
use std::io::Write;
use std::path::PathBuf;

use formation_messages::{FormationRequest, FormationStored};
use interop::prelude::*;

/// Settings of `tutorial-file`, read from the item's `[item.settings]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Folder of the output file, created if missing.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// File the lines are appended to.
    #[serde(default = "default_filename")]
    pub filename: String,
}

fn default_path() -> PathBuf {
    PathBuf::from("data/out")
}

fn default_filename() -> String {
    "toto.csv".into()
}
// ANCHOR_END: settings

// ANCHOR: host
request_set! {
    /// What `tutorial-file` accepts.
    pub enum FileRequest { Formation(FormationRequest) }
}

/// The file operation.
pub struct FileOperation {
    file: PathBuf,
}

impl BusinessOperation for FileOperation {
    const CLASS: &'static str = "tutorial-file";
    type Settings = Settings;
    type Request = FileRequest;

    fn new(settings: Settings, _ctx: &HostContext) -> HostResult<Self> {
        Ok(Self {
            file: settings.path.join(settings.filename),
        })
    }

    async fn on_init(&mut self, _ctx: &HostContext) -> HostResult<()> {
        let dir = self.file.parent().map(PathBuf::from).unwrap_or_default();
        let error = format!("cannot create folder {}", dir.display());
        crate::blocking(move || std::fs::create_dir_all(dir))
            .await?
            .map_err(|e| HostError::new(format!("{error}: {e}")))
    }

    async fn on_message(
        &mut self,
        _ctx: &MessageContext,
        request: FileRequest,
    ) -> HostResult<AnyMessage> {
        let FileRequest::Formation(FormationRequest { formation: f }) = request;
        let line = format!("{} : {} : {}\n", f.id, f.salle, f.nom);
        self.put_line(line).await?;
        AnyMessage::new(&FormationStored {
            id: f.id,
            location: self.file.display().to_string(),
        })
    }
}
// ANCHOR_END: host

// ANCHOR: put_line
impl FileOperation {
    /// Append one line to the file, off the arbiter thread.
    async fn put_line(&self, line: String) -> HostResult<()> {
        let file = self.file.clone();
        crate::blocking(move || {
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)?;
            out.write_all(line.as_bytes())
        })
        .await?
        .map_err(|e| HostError::new(format!("writing {}: {e}", self.file.display())))
    }
}
// ANCHOR_END: put_line

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

    // ANCHOR: test
    #[actix_rt::test]
    async fn each_formation_is_one_line_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            path: dir.path().join("out"),
            filename: "toto.csv".into(),
        };
        let mut op = TestContext::new()
            .operation::<FileOperation>(settings)
            .await
            .unwrap();

        let reply = op.send(&request(3, "formation3", "salle3")).await.unwrap();
        assert_eq!(reply.decode::<FormationStored>().unwrap().id, 3);
        op.send(&request(4, "formation4", "salle4")).await.unwrap();

        let text = std::fs::read_to_string(dir.path().join("out/toto.csv")).unwrap();
        assert_eq!(text, "3 : salle3 : formation3\n4 : salle4 : formation4\n");
    }
    // ANCHOR_END: test

    #[actix_rt::test]
    async fn other_message_types_are_refused_naming_what_it_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let settings: Settings =
            settings_from_toml(&format!("path = {:?}", dir.path().display().to_string())).unwrap();
        let mut op = TestContext::new()
            .operation::<FileOperation>(settings)
            .await
            .unwrap();
        let err = op.send(&Ack {}).await.unwrap_err();
        assert!(err.message.contains("FormationRequest"), "{err}");
    }

    #[actix_rt::test]
    async fn an_unwritable_folder_fails_at_init_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), "x").unwrap();
        let settings = Settings {
            path: dir.path().join("blocker"),
            filename: "f.txt".into(),
        };
        let err = match TestContext::new()
            .operation::<FileOperation>(settings)
            .await
        {
            Err(e) => e,
            Ok(_) => panic!("a file as folder must fail"),
        };
        assert!(err.message.contains("blocker"), "{err}");
    }

    #[test]
    fn settings_have_defaults_and_refuse_unknown_keys() {
        let s: Settings = settings_from_toml("").unwrap();
        assert_eq!(s.path.join(s.filename), PathBuf::from("data/out/toto.csv"));
        let err = settings_from_toml::<Settings>("file_name = \"x\"").unwrap_err();
        assert!(err.contains("file_name"), "{err}");
    }
}
