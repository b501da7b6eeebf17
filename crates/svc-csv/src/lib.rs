//! `svc-csv`: a business service with a file inbound adapter and a CSV record map, as
//! `EnsLib.File.InboundAdapter` + a record-map service in IRIS. Every `call_interval_ms` it
//! lists the inbox folder (`path`) for files matching `file_spec`, reads each one as a CSV
//! with an `id;nom;salle` header, and sends one `FormationRequest` per row to `target`, each
//! row its own session. A file read to its end is moved to `archive_path`; a file it cannot
//! use (empty, header without a required column, read error) is moved to `error_path`.
//!
//! Files still being written: a file is taken as soon as its name matches `file_spec`, so
//! writers write under another name (`x.csv.part`, `x.tmp`) and rename it into the inbox
//! when done (the rename convention). Hidden files (`.x.csv`, editors' and rsync's
//! temporary files) are never taken.
//!
//! Files are streamed: rows are read in chunks of [`READ_CHUNK_ROWS`] inside
//! `tokio::task::spawn_blocking` (the reader moves into the blocking task and back) and sent
//! concurrently, at most `max_in_flight` at once, so memory stays bounded whatever the file
//! size.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use formation_messages::{Formation, FormationRequest};
use futures_util::stream::{FuturesUnordered, StreamExt};
use interop::prelude::*;
use interop::Level;
use serde::Deserializer;
use tokio::task::JoinHandle;

/// The class name used in config (`class = "svc-csv"`).
pub const CLASS: &str = "svc-csv";

/// Rows read per blocking read (the unit between two `stopping()` checks).
pub const READ_CHUNK_ROWS: usize = 1024;

/// An info event is written every this many rows of a file.
pub const PROGRESS_EVERY_ROWS: u64 = 100_000;

/// Row-level events (rejected rows, failed sends) written per file; beyond this the file's
/// summary still counts them, so a broken million-row file does not flood the event log.
pub const MAX_ROW_EVENTS_PER_FILE: u64 = 1000;

/// Read buffer of one file.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The columns a file's header must have (trimmed, case-insensitive).
const REQUIRED_COLUMNS: [&str; 3] = ["id", "nom", "salle"];

/// Settings of a `svc-csv` item (`[item.settings]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Inbox folder polled for CSV files; created if missing. Relative paths are relative
    /// to the production's working directory.
    pub path: PathBuf,
    /// Glob on the file names in `path` (not on sub-folders), e.g. `*.csv` or
    /// `formation_*.csv`. Case-sensitive; hidden files (`.x.csv`) never match.
    #[serde(default = "default_file_spec")]
    pub file_spec: String,
    /// Folder the files read to their end are moved to; created if missing. Default:
    /// `<path>/archive`. A name already taken there gets a timestamp suffix.
    #[serde(default)]
    pub archive_path: Option<PathBuf>,
    /// Folder the files that cannot be used (empty, missing column, read error) are moved
    /// to; created if missing. Default: `<path>/error`.
    #[serde(default)]
    pub error_path: Option<PathBuf>,
    /// Field separator: one ASCII character (not a quote or a line break).
    #[serde(default = "default_delimiter", deserialize_with = "delimiter_setting")]
    pub delimiter: String,
    /// How often the inbox is polled, in milliseconds (above 0).
    #[serde(default = "default_call_interval_ms")]
    pub call_interval_ms: u64,
    /// Item the `FormationRequest`s are sent to.
    #[serde(default = "default_target")]
    pub target: String,
    /// Rows sent concurrently (each its own session), at least 1. Sinks see rows in the
    /// order they arrive, not file order; `1` keeps file order (and is slower).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_file_spec() -> String {
    "*.csv".into()
}

fn default_delimiter() -> String {
    ";".into()
}

fn default_call_interval_ms() -> u64 {
    5000
}

fn default_target() -> String {
    "Router".into()
}

/// Enough sessions in flight for the store's group commits to fill up (BENCHMARKS.md:
/// 512 gave about 10% fewer rows/s), few enough for a 1,000,000-row file to stay under
/// 64 MiB.
fn default_max_in_flight() -> usize {
    1024
}

/// Refuse a bad delimiter while parsing the config, so `validate` reports it.
fn delimiter_setting<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    delimiter_byte(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

fn delimiter_byte(text: &str) -> Result<u8, String> {
    match text.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Ok(*b),
        _ => Err(format!(
            "setting 'delimiter' must be a single ASCII character other than a quote or a \
             line break, got {text:?}"
        )),
    }
}

impl Settings {
    /// Settings with every default, reading the inbox `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file_spec: default_file_spec(),
            archive_path: None,
            error_path: None,
            delimiter: default_delimiter(),
            call_interval_ms: default_call_interval_ms(),
            target: default_target(),
            max_in_flight: default_max_in_flight(),
        }
    }

    /// Check the settings and fill in the defaults.
    fn resolve(&self) -> Result<Config, String> {
        if self.path.as_os_str().is_empty() {
            return Err("setting 'path' is empty".into());
        }
        if self.file_spec.contains('/') {
            return Err(format!(
                "setting 'file_spec' matches file names in 'path', it cannot contain '/': {:?}",
                self.file_spec
            ));
        }
        let pattern = glob::Pattern::new(&self.file_spec).map_err(|e| {
            format!(
                "setting 'file_spec': invalid pattern {:?}: {e}",
                self.file_spec
            )
        })?;
        let delimiter = delimiter_byte(&self.delimiter)?;
        if self.call_interval_ms == 0 {
            return Err("setting 'call_interval_ms' must be above 0".into());
        }
        if self.max_in_flight == 0 {
            return Err("setting 'max_in_flight' must be at least 1".into());
        }
        if self.target.trim().is_empty() {
            return Err("setting 'target' is empty".into());
        }
        Ok(Config {
            inbox: self.path.clone(),
            archive: self
                .archive_path
                .clone()
                .unwrap_or_else(|| self.path.join("archive")),
            error: self
                .error_path
                .clone()
                .unwrap_or_else(|| self.path.join("error")),
            pattern,
            delimiter,
            interval: Duration::from_millis(self.call_interval_ms),
            target: self.target.clone(),
            max_in_flight: self.max_in_flight,
        })
    }
}

/// Checked settings, defaults filled in.
#[derive(Clone, Debug)]
struct Config {
    inbox: PathBuf,
    archive: PathBuf,
    error: PathBuf,
    pattern: glob::Pattern,
    delimiter: u8,
    interval: Duration,
    target: String,
    max_in_flight: usize,
}

/// Where a handled file goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Destination {
    Archive,
    Error,
}

/// The CSV service: one instance polls one inbox.
pub struct CsvService {
    config: Config,
    /// Files handled to the end whose move failed: never read again, their move is retried
    /// on every poll (so a file is not ingested twice because the archive was unwritable).
    unmoved: HashMap<PathBuf, Destination>,
}

impl BusinessService for CsvService {
    const CLASS: &'static str = CLASS;
    type Settings = Settings;
    /// Two instances would read the same inbox.
    const MAX_POOL_SIZE: Option<usize> = Some(1);

    fn targets() -> Vec<Target> {
        vec![Target::sends::<FormationRequest>("target")]
    }

    fn new(settings: Settings, ctx: &HostContext) -> HostResult<Self> {
        let config = settings
            .resolve()
            .map_err(|e| HostError::new(format!("item '{}': {e}", ctx.item())))?;
        Ok(Self {
            config,
            unmoved: HashMap::new(),
        })
    }

    fn call_interval(&self) -> Option<Duration> {
        Some(self.config.interval)
    }

    async fn on_init(&mut self, ctx: &ServiceContext) -> HostResult<()> {
        let config = self.config.clone();
        blocking(move || create_folders(&config))
            .await
            .and_then(|r| r)
            .map_err(|e| HostError::new(format!("item '{}': {e}", ctx.item())))
    }

    async fn on_process_input(&mut self, ctx: &ServiceContext) -> HostResult<()> {
        self.poll(ctx, &|| ctx.stopping()).await
    }
}

impl CsvService {
    /// One poll; `stop` says when to stop early (the production's stop flag).
    async fn poll(&mut self, ctx: &ServiceContext, stop: &dyn Fn() -> bool) -> HostResult<()> {
        self.retry_moves(ctx).await;
        let inbox = self.config.inbox.clone();
        let pattern = self.config.pattern.clone();
        let files = blocking(move || list_inbox(&inbox, &pattern))
            .await
            .and_then(|r| r)
            .map_err(|e| HostError::new(format!("item '{}': {e}", ctx.item())))?;
        for file in files {
            if stop() {
                break;
            }
            if self.unmoved.contains_key(&file) {
                continue;
            }
            let outcome = ingest_file(&self.config, ctx, &file, stop).await;
            self.finish(ctx, &file, outcome).await;
        }
        Ok(())
    }

    /// Move a handled file and write its summary event.
    async fn finish(&mut self, ctx: &ServiceContext, file: &Path, outcome: FileOutcome) {
        let name = display_name(file);
        let (destination, level, text) = match outcome {
            FileOutcome::Vanished => {
                ctx.warn(&format!(
                    "file '{name}' disappeared from the inbox before it was read"
                ));
                return;
            }
            FileOutcome::Stopped(counts) => {
                ctx.warn(&format!(
                    "file '{name}': stopping: {}, {} not sent; the file is left in the inbox \
                     (not archived)",
                    counts.summary(),
                    counts.not_handled()
                ));
                return;
            }
            FileOutcome::Done(counts) => (
                Destination::Archive,
                Level::Info,
                format!("file '{name}': {}", counts.summary()),
            ),
            FileOutcome::Rejected { reason, counts } => {
                let text = match counts {
                    Some(counts) => format!("file '{name}': {reason} ({})", counts.summary()),
                    None => format!("file '{name}': {reason}"),
                };
                (Destination::Error, Level::Error, text)
            }
        };
        match self.move_to(file, destination).await {
            Ok(dest) => ctx.log(level, &format!("{text}; moved to '{}'", dest.display())),
            Err(e) => {
                ctx.log(level, &text);
                ctx.error(&format!(
                    "file '{name}': {e}; it will not be read again, the move is retried on \
                     every poll"
                ));
                self.unmoved.insert(file.to_path_buf(), destination);
            }
        }
    }

    /// Retry the moves that failed before; files gone meanwhile are forgotten.
    async fn retry_moves(&mut self, ctx: &ServiceContext) {
        let pending: Vec<(PathBuf, Destination)> = self.unmoved.drain().collect();
        for (file, destination) in pending {
            let exists = {
                let file = file.clone();
                blocking(move || file.is_file()).await.unwrap_or(true)
            };
            if !exists {
                continue;
            }
            match self.move_to(&file, destination).await {
                Ok(dest) => ctx.info(&format!(
                    "file '{}' moved to '{}'",
                    display_name(&file),
                    dest.display()
                )),
                Err(_) => {
                    self.unmoved.insert(file, destination);
                }
            }
        }
    }

    async fn move_to(&self, file: &Path, destination: Destination) -> Result<PathBuf, String> {
        let (folder, setting) = match destination {
            Destination::Archive => (self.config.archive.clone(), "archive_path"),
            Destination::Error => (self.config.error.clone(), "error_path"),
        };
        let source = file.to_path_buf();
        let target = folder.clone();
        blocking(move || move_file(&source, &target))
            .await
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot move it to {setting} '{}': {e}", folder.display()))
    }
}

/// Register the class and the formation message types.
pub fn register(registry: &mut interop::Registry) {
    registry.service::<CsvService>();
    formation_messages::register(registry);
}

/// Run blocking file work off the arbiter thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("blocking file task failed: {e}"))
}

fn create_folders(config: &Config) -> Result<(), String> {
    let folders = [
        ("path", &config.inbox),
        ("archive_path", &config.archive),
        ("error_path", &config.error),
    ];
    for (setting, folder) in folders {
        fs::create_dir_all(folder).map_err(|e| {
            format!(
                "setting '{setting}': cannot create folder '{}': {e}",
                folder.display()
            )
        })?;
    }
    // A destination equal to the inbox would have its files read again.
    let inbox = fs::canonicalize(&config.inbox)
        .map_err(|e| format!("setting 'path': '{}': {e}", config.inbox.display()))?;
    for (setting, folder) in &folders[1..] {
        if fs::canonicalize(folder).is_ok_and(|f| f == inbox) {
            return Err(format!(
                "setting '{setting}' is the inbox itself ('{}'): its files would be read again",
                folder.display()
            ));
        }
    }
    Ok(())
}

/// Files of the inbox matching the pattern, sorted by name.
fn list_inbox(inbox: &Path, pattern: &glob::Pattern) -> Result<Vec<PathBuf>, String> {
    let listing_error =
        |e: io::Error| format!("setting 'path': cannot list '{}': {e}", inbox.display());
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(inbox).map_err(listing_error)? {
        let entry = entry.map_err(listing_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !pattern.matches_with(&name, options) {
            continue;
        }
        let path = entry.path();
        // Follows symbolic links; sub-folders (archive, error) are not files.
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Move `file` into `folder` under its own name, or with a timestamp suffix when the name is
/// taken there (`name_20250102-030405-678.csv`).
fn move_file(file: &Path, folder: &Path) -> io::Result<PathBuf> {
    let name = file
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut dest = folder.join(name);
    if dest.symlink_metadata().is_ok() {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S-%3f").to_string();
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_os_string())
            .unwrap_or_default();
        let extension = Path::new(name).extension();
        for n in 1u32.. {
            let mut candidate = OsString::from(&stem);
            candidate.push(format!("_{stamp}"));
            if n > 1 {
                candidate.push(format!("_{n}"));
            }
            if let Some(ext) = extension {
                candidate.push(".");
                candidate.push(ext);
            }
            dest = folder.join(candidate);
            if dest.symlink_metadata().is_err() {
                break;
            }
        }
    }
    match fs::rename(file, &dest) {
        Ok(()) => Ok(dest),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            fs::copy(file, &dest)?;
            if let Err(e) = fs::remove_file(file) {
                let _ = fs::remove_file(&dest);
                return Err(e);
            }
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}

fn display_name(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string())
}

/// Row counts of one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Data rows read (the header not included).
    read: u64,
    /// Rows the target replied to normally.
    sent: u64,
    /// Rows whose send failed (error reply, timeout, target down).
    failed: u64,
    /// Malformed rows, skipped.
    rejected: u64,
    /// Rows accepted before a restart (the file was half read): not sent again.
    already: u64,
}

impl Counts {
    fn summary(&self) -> String {
        let mut text = format!(
            "{} rows read, {} sent, {} failed, {} rejected",
            self.read, self.sent, self.failed, self.rejected
        );
        if self.already > 0 {
            text.push_str(&format!(
                ", {} already accepted before a restart",
                self.already
            ));
        }
        text
    }

    fn not_handled(&self) -> u64 {
        self.read
            .saturating_sub(self.sent + self.failed + self.rejected + self.already)
    }
}

/// How reading a file ended.
#[derive(Debug)]
enum FileOutcome {
    /// Read to the end: archive it.
    Done(Counts),
    /// Unusable: move it to the error folder.
    Rejected {
        reason: String,
        counts: Option<Counts>,
    },
    /// The production is stopping: leave it in the inbox.
    Stopped(Counts),
    /// Gone before it could be opened.
    Vanished,
}

/// One data row of a file.
#[derive(Debug)]
enum Row {
    Good { line: u64, formation: Formation },
    Bad { line: u64, reason: String },
}

/// How a chunk read ended.
#[derive(Debug)]
enum ChunkEnd {
    More,
    Eof,
    Failed(String),
}

/// What opening a file gave.
enum Opened {
    Rows(Box<RowReader>),
    Empty,
    BadHeader(String),
    Vanished,
}

/// A CSV file being read, its header already checked.
struct RowReader {
    reader: csv::Reader<BufReader<File>>,
    /// Positions of `id`, `nom`, `salle` in the header.
    columns: [usize; 3],
    /// Fields per row (the header's).
    width: usize,
    record: csv::ByteRecord,
    /// Name, size and modification time: the prefix of the rows' idempotency keys.
    identity: String,
}

/// Open a file, skip a UTF-8 BOM, read and check its header.
fn open_csv(path: &Path, delimiter: u8) -> Result<Opened, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Vanished),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    // Which file this is, for the rows' idempotency keys: a new file under the same name
    // differs in size or modification time.
    let identity = match file.metadata() {
        Ok(m) => {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}:{}:{modified}", display_name(path), m.len())
        }
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let mut input = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let start = input.fill_buf().map_err(|e| format!("cannot read: {e}"))?;
    if start.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
    }
    // Records end at '\n' only, and a '\r' before it is stripped in `field`: with the
    // csv crate's default CRLF terminator, line numbers after a "\r\n" lag by one.
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut header = csv::ByteRecord::new();
    // The header is the first line that is not blank.
    loop {
        match reader.read_byte_record(&mut header) {
            Ok(true) if header.len() == 1 && field(&header, 0).trim_ascii().is_empty() => {}
            Ok(true) => break,
            Ok(false) => return Ok(Opened::Empty),
            Err(e) => return Err(format!("cannot read the header: {e}")),
        }
    }
    let names: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_lowercase())
        .collect();
    let mut columns = [0usize; 3];
    let mut missing = Vec::new();
    for (slot, wanted) in columns.iter_mut().zip(REQUIRED_COLUMNS) {
        let mut found = names.iter().enumerate().filter(|(_, n)| *n == wanted);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => *slot = i,
            (Some(_), Some(_)) => {
                return Ok(Opened::BadHeader(format!(
                    "header has the column '{wanted}' more than once"
                )))
            }
            (None, _) => missing.push(wanted),
        }
    }
    if !missing.is_empty() {
        return Ok(Opened::BadHeader(format!(
            "header lacks the required column(s) {} (found: {})",
            missing.join(", "),
            names.join(", ")
        )));
    }
    Ok(Opened::Rows(Box::new(RowReader {
        reader,
        columns,
        width: header.len(),
        record: csv::ByteRecord::new(),
        identity,
    })))
}

impl RowReader {
    /// Read up to `max` rows (blocking).
    fn read_chunk(&mut self, max: usize) -> (Vec<Row>, ChunkEnd) {
        let mut rows = Vec::with_capacity(max);
        while rows.len() < max {
            match self.reader.read_byte_record(&mut self.record) {
                // A blank line ("\r\n" read up to '\n') is no row.
                Ok(true) if self.record.len() == 1 && field(&self.record, 0).is_empty() => {}
                Ok(true) => rows.push(self.parse()),
                Ok(false) => return (rows, ChunkEnd::Eof),
                Err(e) => {
                    let line = self.reader.position().line();
                    return (
                        rows,
                        ChunkEnd::Failed(format!("read error at line {line}: {e}")),
                    );
                }
            }
        }
        (rows, ChunkEnd::More)
    }

    fn parse(&self) -> Row {
        let record = &self.record;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |reason: String| Row::Bad { line, reason };
        if record.len() != self.width {
            return bad(format!(
                "expected {} fields as in the header, found {}",
                self.width,
                record.len()
            ));
        }
        let mut text = [""; 3];
        for ((slot, column), name) in text.iter_mut().zip(self.columns).zip(REQUIRED_COLUMNS) {
            let bytes = field(record, column);
            match std::str::from_utf8(bytes) {
                Ok(s) => *slot = s,
                Err(_) => return bad(format!("column '{name}': invalid UTF-8")),
            }
        }
        let [id, nom, salle] = text;
        match id.trim().parse::<i64>() {
            Ok(id) => Row::Good {
                line,
                formation: Formation {
                    id,
                    nom: nom.to_string(),
                    salle: salle.to_string(),
                },
            },
            Err(_) => bad(format!("column 'id': {id:?} is not an integer")),
        }
    }
}

/// A field without the '\r' of a CRLF line end (records are split at '\n' only).
fn field(record: &csv::ByteRecord, index: usize) -> &[u8] {
    let bytes = record.get(index).unwrap_or_default();
    if index + 1 == record.len() {
        bytes.strip_suffix(b"\r").unwrap_or(bytes)
    } else {
        bytes
    }
}

/// Row-level events of one file, capped at [`MAX_ROW_EVENTS_PER_FILE`].
struct RowLog<'a> {
    ctx: &'a ServiceContext,
    name: &'a str,
    written: u64,
}

impl RowLog<'_> {
    fn row(&mut self, level: Level, line: u64, text: &str) {
        if self.written < MAX_ROW_EVENTS_PER_FILE {
            self.ctx
                .log(level, &format!("file '{}' line {line}: {text}", self.name));
        } else if self.written == MAX_ROW_EVENTS_PER_FILE {
            self.ctx.warn(&format!(
                "file '{}': more than {MAX_ROW_EVENTS_PER_FILE} row errors, the others are \
                 only counted in the file's summary",
                self.name
            ));
        }
        self.written += 1;
    }
}

/// Send one row as its own session, keyed by file and line: after a restart in the
/// middle of a file, the rows accepted before come back as `SendError::Duplicate` and
/// are not sent again.
async fn send_row(
    ctx: &ServiceContext,
    target: &str,
    key_prefix: &str,
    line: u64,
    formation: Formation,
) -> (u64, i64, Result<(), SendError>) {
    let id = formation.id;
    let key = format!("{key_prefix}#{line}");
    let result = ctx
        .send_request_keyed(target, &FormationRequest { formation }, key)
        .await
        .result
        .map(|_| ());
    (line, id, result)
}

async fn join_read<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

type ReadTask = JoinHandle<(Box<RowReader>, Vec<Row>, ChunkEnd)>;

/// Read one file and send its rows; the caller moves it according to the outcome.
async fn ingest_file(
    config: &Config,
    ctx: &ServiceContext,
    path: &Path,
    stop: &dyn Fn() -> bool,
) -> FileOutcome {
    let name = display_name(path);
    let opened = {
        let path = path.to_path_buf();
        let delimiter = config.delimiter;
        blocking(move || open_csv(&path, delimiter))
            .await
            .and_then(|r| r)
    };
    let reader = match opened {
        Ok(Opened::Rows(reader)) => reader,
        Ok(Opened::Vanished) => return FileOutcome::Vanished,
        Ok(Opened::Empty) => {
            return FileOutcome::Rejected {
                reason: "empty file (no header row)".into(),
                counts: None,
            }
        }
        Ok(Opened::BadHeader(reason)) | Err(reason) => {
            return FileOutcome::Rejected {
                reason,
                counts: None,
            }
        }
    };

    let key_prefix = format!("{}:{}", ctx.item(), reader.identity);
    let mut log = RowLog {
        ctx,
        name: &name,
        written: 0,
    };
    let mut counts = Counts::default();
    // Good rows read and not sent yet (at most one chunk).
    let mut pending: VecDeque<(u64, Formation)> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    let mut reader: Option<Box<RowReader>> = Some(reader);
    let mut reading: Option<ReadTask> = None;
    let mut eof = false;
    let mut failure: Option<String> = None;
    let mut stopped = false;

    loop {
        if !stopped && stop() {
            stopped = true;
            pending.clear();
        }
        if !stopped {
            while in_flight.len() < config.max_in_flight {
                let Some((line, formation)) = pending.pop_front() else {
                    break;
                };
                in_flight.push(send_row(ctx, &config.target, &key_prefix, line, formation));
            }
            if pending.is_empty() && reading.is_none() && !eof && failure.is_none() {
                if let Some(mut r) = reader.take() {
                    reading = Some(tokio::task::spawn_blocking(move || {
                        let (rows, end) = r.read_chunk(READ_CHUNK_ROWS);
                        (r, rows, end)
                    }));
                }
            }
        }
        if in_flight.is_empty() && reading.is_none() {
            break;
        }
        tokio::select! {
            Some((line, id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                match result {
                    Ok(()) => counts.sent += 1,
                    Err(SendError::Duplicate(_)) => counts.already += 1,
                    Err(e) => {
                        counts.failed += 1;
                        log.row(
                            Level::Warn,
                            line,
                            &format!("id {id} not delivered to '{}': {e}", config.target),
                        );
                    }
                }
            }
            joined = join_read(&mut reading), if reading.is_some() => {
                reading = None;
                match joined {
                    Err(e) => failure = Some(format!("reader task failed: {e}")),
                    Ok(_) if stopped => {}
                    Ok((r, rows, end)) => {
                        reader = Some(r);
                        for row in rows {
                            counts.read += 1;
                            match row {
                                Row::Good { line, formation } => {
                                    pending.push_back((line, formation))
                                }
                                Row::Bad { line, reason } => {
                                    counts.rejected += 1;
                                    log.row(Level::Error, line, &format!("{reason}; row skipped"));
                                }
                            }
                            if counts.read % PROGRESS_EVERY_ROWS == 0 {
                                ctx.info(&format!(
                                    "file '{name}': {} rows read so far ({} sent, {} failed, \
                                     {} rejected)",
                                    counts.read, counts.sent, counts.failed, counts.rejected
                                ));
                            }
                        }
                        match end {
                            ChunkEnd::More => {}
                            ChunkEnd::Eof => eof = true,
                            ChunkEnd::Failed(e) => failure = Some(e),
                        }
                    }
                }
            }
            else => break,
        }
    }

    if stopped {
        FileOutcome::Stopped(counts)
    } else if let Some(reason) = failure {
        FileOutcome::Rejected {
            reason,
            counts: Some(counts),
        }
    } else {
        FileOutcome::Done(counts)
    }
}

#[cfg(test)]
mod tests;
