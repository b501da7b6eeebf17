//! `production new operation|process|service NAME`: create a host crate from a template
//! under `crates/`, register its class in [`crate::registry`], add it as a dependency of
//! the `production` crate, and append a disabled `[[item]]` for it to the config. The
//! generated crate builds and its tests pass as is.
//!
//! Everything is computed and checked first ([`plan`]: names, message type, the new files,
//! the edited texts), then written ([`Plan::apply`]); nothing existing is overwritten, and
//! a write that fails undoes the writes before it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use interop::ProductionConfig;

const CARGO_TEMPLATE: &str = include_str!("../templates/Cargo.toml.tmpl");
const MESSAGE_TEMPLATE: &str = include_str!("../templates/message.rs.tmpl");
const OPERATION_TEMPLATE: &str = include_str!("../templates/operation.rs.tmpl");
const PROCESS_TEMPLATE: &str = include_str!("../templates/process.rs.tmpl");
const SERVICE_TEMPLATE: &str = include_str!("../templates/service.rs.tmpl");

/// The comment of the item added to the config.
pub const ITEM_COMMENT: &str = "created by production new; enable when ready";

/// Which of the three host kinds to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Operation,
    Process,
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Operation => "operation",
            Kind::Process => "process",
            Kind::Service => "service",
        }
    }

    /// The usual crate-name prefix of the kind, left out of the struct name.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Operation => "op-",
            Kind::Process => "proc-",
            Kind::Service => "svc-",
        }
    }

    /// Appended to the struct name: `op-audit` → `AuditOperation`.
    fn suffix(self) -> &'static str {
        match self {
            Kind::Operation => "Operation",
            Kind::Process => "Process",
            Kind::Service => "Service",
        }
    }

    /// The method to write first, named in the next steps.
    fn handler(self) -> &'static str {
        match self {
            Kind::Operation => "on_message",
            Kind::Process => "on_request",
            Kind::Service => "on_process_input",
        }
    }
}

/// `production new KIND NAME`.
#[derive(Args, Clone, Debug)]
pub struct NewArgs {
    /// What to create.
    pub kind: Kind,
    /// Crate and class name, kebab-case, e.g. op-audit (the item is named after the host
    /// struct: op-audit → AuditOperation).
    pub name: String,
    /// The workspace to create it in: the folder of the root Cargo.toml [default: the
    /// current directory]. A relative --config is resolved inside it.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// The message type an operation or a process handles, or a service sends, e.g.
    /// FormationRequest: Ack, AlertRequest, or a type defined (with an `example()`) at the
    /// root of a workspace crate's src/lib.rs [default: a new `<Name>Request { text }`
    /// defined in the new crate].
    #[arg(long, value_name = "TYPE")]
    pub message: Option<String>,
}

/// Why `production new` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// A bad name, workspace, config or message type: nothing was written (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Writing failed (exit 1); the message says what was undone.
    #[error("{0}")]
    Failed(String),
}

impl ScaffoldError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ScaffoldError::Usage(_) => 2,
            ScaffoldError::Failed(_) => 1,
        }
    }
}

fn usage(text: impl Into<String>) -> ScaffoldError {
    ScaffoldError::Usage(text.into())
}

/// Run `production new`; `config` is the global `--config`.
pub fn run(config: &Path, args: &NewArgs) -> ExitCode {
    let workspace = match &args.workspace {
        Some(dir) => dir.clone(),
        None => match std::env::current_dir() {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("error: cannot read the current directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = plan(
        args.kind,
        &args.name,
        &workspace,
        config,
        args.message.as_deref(),
    )
    .and_then(|plan| plan.apply().map(|()| plan));
    match result {
        Ok(plan) => {
            print!("{}", plan.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Names

/// Rust keywords and crate names a host crate cannot take (its snake name is a path).
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "build",
    "production",
    "interop",
];

/// Check a crate/class name: `^[a-z][a-z0-9-]*[a-z0-9]$`, no `--`, not a Rust keyword or
/// a name the workspace uses already.
pub fn validate_name(name: &str) -> Result<(), String> {
    let shape = "a crate name is kebab-case: a lowercase letter, then lowercase letters, \
                 digits and single hyphens, ending with a letter or a digit (e.g. op-audit)";
    let Some(first) = name.chars().next() else {
        return Err(format!("the name is empty; {shape}"));
    };
    if !first.is_ascii_lowercase() {
        return Err(format!(
            "name '{name}' must start with a lowercase letter; {shape}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "name '{name}' contains {bad:?}, which a crate name cannot; {shape}"
        ));
    }
    if name.len() < 2 || name.ends_with('-') {
        return Err(format!(
            "name '{name}' must end with a letter or a digit (and have at least 2 \
             characters); {shape}"
        ));
    }
    if name.contains("--") {
        return Err(format!("name '{name}' contains '--'; {shape}"));
    }
    if RESERVED.contains(&snake_case(name).as_str()) {
        return Err(format!(
            "name '{name}' is a Rust keyword or a reserved crate name; choose another"
        ));
    }
    Ok(())
}

/// `op-audit` → `op_audit`.
pub fn snake_case(name: &str) -> String {
    name.replace('-', "_")
}

/// `op-audit-2` → `OpAudit2`.
pub fn upper_camel(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            out.push(c.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

/// The Rust and config names of a new host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Crate, package and class name: `op-audit`.
    pub crate_name: String,
    /// The crate as a Rust path: `op_audit`.
    pub snake: String,
    /// The host struct, also the item name in the config: `AuditOperation`.
    pub struct_name: String,
    /// The `request_set!` enum: `AuditOperationRequest`.
    pub request_set: String,
    /// The crate's own request type, when it defines one: `AuditRequest`.
    pub own_message: String,
    /// The fallback when `own_message` is taken: `OpAuditRequest`.
    pub own_message_fallback: String,
}

impl Names {
    /// Names for a (valid) crate name: the kind's usual prefix is dropped and the kind
    /// appended, `op-audit` → `AuditOperation`, `audit` → `AuditOperation`.
    pub fn new(kind: Kind, name: &str) -> Self {
        // A Rust name cannot start with a digit: `op-2x` keeps its prefix.
        let stem = name
            .strip_prefix(kind.prefix())
            .filter(|s| s.starts_with(|c: char| c.is_ascii_lowercase()))
            .unwrap_or(name);
        let stem_camel = upper_camel(stem);
        let struct_name = if stem_camel.ends_with(kind.suffix()) {
            stem_camel.clone()
        } else {
            format!("{stem_camel}{}", kind.suffix())
        };
        Self {
            crate_name: name.to_string(),
            snake: snake_case(name),
            request_set: format!("{struct_name}Request"),
            struct_name,
            own_message: format!("{stem_camel}Request"),
            own_message_fallback: format!("{}Request", upper_camel(name)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The workspace as text

/// What `new` reads of a workspace.
#[derive(Debug, Default)]
pub struct Workspace {
    pub root: PathBuf,
    /// Keys of the root `[workspace.dependencies]`.
    pub workspace_deps: BTreeSet<String>,
    /// Every crate under `crates/`.
    pub crates: Vec<CrateSource>,
}

/// One crate of the workspace, as text.
#[derive(Debug, Default)]
pub struct CrateSource {
    /// Folder name under `crates/`.
    pub dir: String,
    /// `[package] name`.
    pub package: String,
    /// `src/lib.rs`, when there is one.
    pub lib_rs: Option<String>,
    /// Every `.rs` file under `src/`.
    pub sources: Vec<String>,
    /// It depends on the `production` crate (so a new host crate cannot depend on it).
    pub uses_production: bool,
}

impl Workspace {
    /// Read the workspace at `root`, checking it is one `new` can work in.
    pub fn read(root: &Path) -> Result<Self, ScaffoldError> {
        let where_ = format!("--workspace {}", root.display());
        let manifest = root.join("Cargo.toml");
        let text = fs::read_to_string(&manifest).map_err(|e| {
            usage(format!(
                "{where_}: cannot read {}: {e} (run `production new` at the workspace root, \
                 or pass --workspace DIR)",
                manifest.display()
            ))
        })?;
        if !text.lines().any(|l| l.trim() == "[workspace]") {
            return Err(usage(format!(
                "{where_}: {} has no [workspace] section",
                manifest.display()
            )));
        }
        if !text.contains("\"crates/*\"") {
            return Err(usage(format!(
                "{where_}: the [workspace] members of {} do not include \"crates/*\", so a \
                 new crate under crates/ would not be built",
                manifest.display()
            )));
        }
        if !text.lines().any(|l| l.trim() == "[workspace.package]") {
            return Err(usage(format!(
                "{where_}: {} has no [workspace.package] (version, edition, license) for the \
                 new crate to inherit",
                manifest.display()
            )));
        }
        let workspace_deps: BTreeSet<String> = section_keys(&text, "workspace.dependencies")
            .into_iter()
            .collect();
        for needed in ["interop", "serde", "actix-rt"] {
            if !workspace_deps.contains(needed) {
                return Err(usage(format!(
                    "{where_}: {} has no `{needed}` in [workspace.dependencies]",
                    manifest.display()
                )));
            }
        }
        for file in [
            "crates/production/Cargo.toml",
            "crates/production/src/lib.rs",
        ] {
            if !root.join(file).is_file() {
                return Err(usage(format!("{where_}: {file} is missing")));
            }
        }
        let mut crates = Vec::new();
        let dirs = fs::read_dir(root.join("crates"))
            .map_err(|e| usage(format!("{where_}: cannot list crates/: {e}")))?;
        for entry in dirs.flatten() {
            let path = entry.path();
            let Some(dir) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let Ok(manifest) = fs::read_to_string(path.join("Cargo.toml")) else {
                continue;
            };
            let package = package_name(&manifest).unwrap_or_else(|| dir.clone());
            let uses_production = ["dependencies", "dev-dependencies", "build-dependencies"]
                .iter()
                .any(|s| section_keys(&manifest, s).iter().any(|k| k == "production"));
            let lib_rs = fs::read_to_string(path.join("src/lib.rs")).ok();
            let mut sources = Vec::new();
            read_sources(&path.join("src"), &mut sources);
            crates.push(CrateSource {
                dir,
                package,
                lib_rs,
                sources,
                uses_production,
            });
        }
        crates.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(Self {
            root: root.to_path_buf(),
            workspace_deps,
            crates,
        })
    }

    /// Message type names declared anywhere (`TYPE_NAME ... = "X"`), with their crate.
    pub fn type_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in &self.crates {
            for source in &c.sources {
                for line in source.lines() {
                    if let Some(name) = declared(line, "TYPE_NAME") {
                        out.push((name, c.dir.clone()));
                    }
                }
            }
        }
        out
    }

    /// Class names declared anywhere (`CLASS ... = "x"`), with their crate.
    pub fn class_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in &self.crates {
            for source in &c.sources {
                for line in source.lines() {
                    if let Some(name) = declared(line, "CLASS") {
                        out.push((name, c.dir.clone()));
                    }
                }
            }
        }
        out
    }
}

fn read_sources(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            read_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if let Ok(text) = fs::read_to_string(&path) {
                out.push(text);
            }
        }
    }
}

/// `const KEY: &'static str = "value";` (or `&str`) → `value`.
fn declared(line: &str, key: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = line
        .strip_prefix("pub const ")
        .or_else(|| line.strip_prefix("const "))?;
    let rest = rest.strip_prefix(key)?.trim_start();
    let rest = rest.strip_prefix(':')?;
    let (_, value) = rest.split_once('=')?;
    let value = value.trim().strip_prefix('"')?;
    let (value, _) = value.split_once('"')?;
    Some(value.to_string())
}

/// `[package] name` of a manifest.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_package = t == "[package]";
        } else if in_package {
            if let Some((key, value)) = t.split_once('=') {
                if key.trim() == "name" {
                    return Some(value.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    None
}

/// The keys of a TOML section (`name = ...`, `name.workspace = true`).
fn section_keys(text: &str, section: &str) -> Vec<String> {
    let header = format!("[{section}]");
    let mut inside = false;
    let mut keys = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == header;
        } else if inside && !t.starts_with('#') {
            if let Some((key, _)) = t.split_once('=') {
                let key = key.trim();
                let key = key
                    .split('.')
                    .next()
                    .unwrap_or(key)
                    .trim()
                    .trim_matches('"');
                if !key.is_empty() {
                    keys.push(key.to_string());
                }
            }
        }
    }
    keys
}

// ---------------------------------------------------------------------------------------
// The message type

/// The request type of the new host and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageSpec {
    /// Rust name and `TYPE_NAME`: `FormationRequest`.
    pub type_name: String,
    /// Defined in the new crate (from the template).
    pub own: bool,
    /// `use` path when defined elsewhere: `formation_messages::FormationRequest`.
    pub use_path: Option<String>,
    /// Dependency line for the new crate's `[dependencies]`.
    pub dependency: Option<String>,
    /// Where it is defined, for the summary.
    pub origin: String,
}

impl MessageSpec {
    /// A type defined in the new crate.
    pub fn own(type_name: &str) -> Self {
        Self {
            type_name: type_name.to_string(),
            own: true,
            use_path: None,
            dependency: None,
            origin: "defined in the new crate".into(),
        }
    }

    /// The enum variant of the request set: `FormationRequest` → `Formation`.
    pub fn variant(&self) -> String {
        match self.type_name.strip_suffix("Request") {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => self.type_name.clone(),
        }
    }
}

/// The default request type: `<Stem>Request`, or `<CrateName>Request` when the workspace
/// or the registry has that type name already.
pub fn own_message(names: &Names, taken: &BTreeSet<String>) -> Result<MessageSpec, String> {
    for candidate in [&names.own_message, &names.own_message_fallback] {
        if !taken.contains(candidate)
            && candidate != &names.struct_name
            && candidate != &names.request_set
        {
            return Ok(MessageSpec::own(candidate));
        }
    }
    Err(format!(
        "the message type names {} and {} are both taken in this workspace: pass \
         --message TYPE",
        names.own_message, names.own_message_fallback
    ))
}

/// Find `--message TYPE`: `Ack`, `AlertRequest`, or a `pub struct TYPE` with an
/// `impl Message for TYPE` (that has an `example()`) in a workspace crate's `src/lib.rs`.
pub fn resolve_message(
    workspace: &Workspace,
    type_name: &str,
    new_crate: &str,
) -> Result<MessageSpec, String> {
    let ident = type_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase())
        && type_name.chars().all(|c| c.is_ascii_alphanumeric());
    if !ident {
        return Err(format!(
            "--message '{type_name}': give a message type name, e.g. FormationRequest (an \
             UpperCamelCase Rust type name, no path)"
        ));
    }
    match type_name {
        "Ack" => {
            return Ok(MessageSpec {
                type_name: type_name.into(),
                own: false,
                use_path: None,
                dependency: None,
                origin: "interop".into(),
            })
        }
        "AlertRequest" => {
            return Ok(MessageSpec {
                type_name: type_name.into(),
                own: false,
                use_path: Some("interop::message::AlertRequest".into()),
                dependency: None,
                origin: "interop".into(),
            })
        }
        _ => {}
    }
    let mut found = Vec::new();
    for c in &workspace.crates {
        if c.dir == "production" || c.dir == new_crate {
            continue;
        }
        let Some(lib) = &c.lib_rs else { continue };
        if let Some(has_example) = message_in(lib, type_name) {
            found.push((c, has_example));
        }
    }
    let (c, has_example) = match found.as_slice() {
        [] => {
            let known: Vec<String> = workspace
                .type_names()
                .into_iter()
                .map(|(name, _)| name)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            return Err(format!(
                "--message '{type_name}': no workspace crate defines it at the root of its \
                 src/lib.rs (`pub struct {type_name}` with `impl Message for {type_name}`); \
                 message types declared in the workspace: {}",
                known.join(", ")
            ));
        }
        [one] => *one,
        several => {
            let crates: Vec<&str> = several.iter().map(|(c, _)| c.dir.as_str()).collect();
            return Err(format!(
                "--message '{type_name}': defined in several crates ({}); cannot choose",
                crates.join(", ")
            ));
        }
    };
    if c.uses_production {
        return Err(format!(
            "--message '{type_name}': it is defined in crates/{}, which depends on the \
             production crate; the new crate depending on it would make a cycle",
            c.dir
        ));
    }
    if !has_example {
        return Err(format!(
            "--message '{type_name}': its `impl Message` in crates/{}/src/lib.rs has no \
             `fn example()`, which the generated tests (and a service's poll) send; add one, \
             or leave out --message",
            c.dir
        ));
    }
    let dependency = if workspace.workspace_deps.contains(&c.package) {
        format!("{}.workspace = true", c.package)
    } else {
        format!("{} = {{ path = \"../{}\" }}", c.package, c.dir)
    };
    Ok(MessageSpec {
        type_name: type_name.into(),
        own: false,
        use_path: Some(format!("{}::{type_name}", snake_case(&c.package))),
        dependency: Some(dependency),
        origin: format!("crate {}", c.package),
    })
}

/// Whether `lib` defines message `name` at its root: `Some(has an example())`.
fn message_in(lib: &str, name: &str) -> Option<bool> {
    let is_struct = lib.lines().any(|l| {
        l.trim_start()
            .strip_prefix("pub struct ")
            .and_then(|r| r.strip_prefix(name))
            .is_some_and(|r| r.is_empty() || r.starts_with([' ', '{', '(', ';', '<']))
    });
    if !is_struct {
        return None;
    }
    for head in [
        format!("impl Message for {name} {{"),
        format!("impl interop::Message for {name} {{"),
    ] {
        if let Some(start) = lib.find(&head) {
            let block = &lib[start + head.len()..];
            let mut depth = 1usize;
            let mut end = block.len();
            for (i, c) in block.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            return Some(block[..end].contains("fn example("));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// Generated text

/// The new crate's `Cargo.toml`.
pub fn render_cargo_toml(kind: Kind, names: &Names, message: &MessageSpec) -> String {
    let verb = if kind == Kind::Service {
        "sends"
    } else {
        "handles"
    };
    let description = format!(
        "A business {} created by production new; it {verb} {}.",
        kind.as_str(),
        message.type_name
    );
    let dep = message
        .dependency
        .as_ref()
        .map(|d| format!("{d}\n"))
        .unwrap_or_default();
    fill(
        CARGO_TEMPLATE,
        &[
            ("NAME", &names.crate_name),
            ("DESCRIPTION", &description),
            ("MESSAGE_DEP", &dep),
        ],
    )
}

/// The new crate's `src/lib.rs`.
pub fn render_lib_rs(kind: Kind, names: &Names, message: &MessageSpec) -> String {
    let template = match kind {
        Kind::Operation => OPERATION_TEMPLATE,
        Kind::Process => PROCESS_TEMPLATE,
        Kind::Service => SERVICE_TEMPLATE,
    };
    let mut uses = vec!["interop::prelude::*".to_string()];
    if kind == Kind::Operation {
        uses.push("interop::Level".into());
    }
    if let Some(path) = &message.use_path {
        uses.push(path.clone());
    }
    let uses = sorted_uses(uses);
    let definition = if message.own {
        let verb = if kind == Kind::Service {
            "sends"
        } else {
            "handles"
        };
        fill(
            MESSAGE_TEMPLATE,
            &[
                ("NAME", &names.crate_name),
                ("VERB", verb),
                ("MESSAGE", &message.type_name),
            ],
        )
    } else {
        String::new()
    };
    fill(
        template,
        &[
            ("USES", &uses),
            ("MESSAGE_DEF", &definition),
            ("NAME", &names.crate_name),
            ("STRUCT", &names.struct_name),
            ("SET", &names.request_set),
            ("VARIANT", &message.variant()),
            ("MESSAGE", &message.type_name),
        ],
    )
}

/// `use` lines in rustfmt's order (lowercase segments before uppercase ones).
fn sorted_uses(mut paths: Vec<String>) -> String {
    fn key(path: &str) -> Vec<(bool, String)> {
        path.split("::")
            .map(|s| {
                (
                    s.starts_with(|c: char| c.is_ascii_uppercase()),
                    s.to_string(),
                )
            })
            .collect()
    }
    paths.sort_by_key(|p| key(p));
    paths.dedup();
    paths.iter().map(|p| format!("use {p};\n")).collect()
}

/// Replace every `{{KEY}}` of a template.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// The `[[item]]` appended to the config, with the settings' defaults.
pub fn item_text(kind: Kind, names: &Names) -> String {
    let settings: &[(&str, &str, &str)] = match kind {
        Kind::Operation => &[(
            "prefix",
            "\"received\"",
            "starts the event-log line of each request",
        )],
        Kind::Process => &[(
            "target",
            "\"\"",
            "item to forward to; empty: reply Ack here",
        )],
        Kind::Service => &[
            (
                "call_interval_ms",
                "5000",
                "how often on_process_input runs",
            ),
            (
                "target",
                "\"\"",
                "item each call sends to; empty: send nothing",
            ),
        ],
    };
    let mut out = format!(
        "# Created by `production new {} {}` (crates/{}).\n[[item]]\nname = \"{}\"\n\
         class = \"{}\"\nenabled = false\ncomment = \"{ITEM_COMMENT}\"\n[item.settings]\n",
        kind.as_str(),
        names.crate_name,
        names.crate_name,
        names.struct_name,
        names.crate_name,
    );
    for (key, value, doc) in settings {
        let assignment = format!("{key} = {value}");
        let _ = writeln!(out, "{assignment:<33} # {doc}");
    }
    out
}

/// The config text with `item` appended: the original bytes stay as they are, followed by
/// a blank line and the item.
pub fn append_item(config: &str, item: &str) -> String {
    let mut out = String::with_capacity(config.len() + item.len() + 2);
    out.push_str(config);
    if !config.is_empty() {
        if !config.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str(item);
    out
}

/// `crates/production/src/lib.rs` with `snake::register(&mut registry);` added as the last
/// call of `pub fn registry() -> Registry`, before its final `registry` expression.
pub fn insert_registration(lib_rs: &str, snake: &str) -> Result<String, String> {
    const HEAD: &str = "pub fn registry() -> Registry {";
    let call = format!("{snake}::register(&mut registry);");
    let lines: Vec<&str> = lib_rs.split_inclusive('\n').collect();
    let heads: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim() == HEAD)
        .collect();
    let start = match heads.as_slice() {
        [one] => *one,
        [] => return Err(format!("no line `{HEAD}` found")),
        _ => return Err(format!("`{HEAD}` is there {} times", heads.len())),
    };
    let indent = &lines[start][..lines[start].len() - lines[start].trim_start().len()];
    let closing = format!("{indent}}}");
    let end = (start + 1..lines.len())
        .find(|&i| lines[i].trim_end() == closing)
        .ok_or_else(|| {
            format!("the closing `}}` of registry() (at the indentation of `{HEAD}`) not found")
        })?;
    let body = &lines[start + 1..end];
    if !body
        .iter()
        .any(|l| l.trim() == "let mut registry = Registry::new();")
    {
        return Err("registry() does not start with `let mut registry = Registry::new();`".into());
    }
    if body.iter().any(|l| l.trim() == call) {
        return Err(format!("registry() already has `{call}`"));
    }
    let last = (start + 1..end)
        .rev()
        .find(|&i| !lines[i].trim().is_empty())
        .ok_or("registry() is empty")?;
    if lines[last].trim() != "registry" {
        return Err(format!(
            "the last line of registry() is `{}`, expected `registry`",
            lines[last].trim()
        ));
    }
    let body_indent = &lines[last][..lines[last].len() - lines[last].trim_start().len()];
    let eol = if lines[last].ends_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::with_capacity(lib_rs.len() + call.len() + 8);
    for (i, line) in lines.iter().enumerate() {
        if i == last {
            out.push_str(body_indent);
            out.push_str(&call);
            out.push_str(eol);
        }
        out.push_str(line);
    }
    Ok(out)
}

/// A manifest with `line` added at the end of its `[dependencies]`; `name` must not be
/// there yet.
pub fn add_dependency(manifest: &str, name: &str, line: &str) -> Result<String, String> {
    let lines: Vec<&str> = manifest.split_inclusive('\n').collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "[dependencies]")
        .ok_or("no [dependencies] section")?;
    let end = (start + 1..lines.len())
        .find(|&i| lines[i].trim_start().starts_with('['))
        .unwrap_or(lines.len());
    let section = &lines[start + 1..end];
    let present = section.iter().any(|l| {
        l.split_once('=').is_some_and(|(key, _)| {
            let key = key.trim();
            key.split('.')
                .next()
                .unwrap_or(key)
                .trim()
                .trim_matches('"')
                == name
        })
    });
    if present {
        return Err(format!("[dependencies] already has `{name}`"));
    }
    // After the last non-blank line of the section.
    let after = (start..end)
        .rev()
        .find(|&i| !lines[i].trim().is_empty())
        .unwrap_or(start);
    let eol = if lines[after].ends_with("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::with_capacity(manifest.len() + line.len() + 2);
    for (i, l) in lines.iter().enumerate() {
        out.push_str(l);
        if i == after {
            if !l.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(line);
            out.push_str(eol);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Plan and apply

/// An existing file `new` changes.
#[derive(Clone, Debug)]
pub struct Edit {
    pub path: PathBuf,
    /// The text as read: the file must still hold it when written, and gets it back on undo.
    pub original: String,
    pub updated: String,
    /// For the summary.
    pub what: String,
}

/// Everything `new` writes, computed and checked before anything is written.
#[derive(Clone, Debug)]
pub struct Plan {
    pub kind: Kind,
    pub names: Names,
    pub message: MessageSpec,
    pub workspace: PathBuf,
    /// `crates/NAME`: created, must not exist.
    pub crate_dir: PathBuf,
    /// New files (inside `crate_dir`) and their text.
    pub files: Vec<(PathBuf, String)>,
    pub edits: Vec<Edit>,
    /// The config file, for the next steps.
    pub config: PathBuf,
    /// Warnings shown with the summary.
    pub notes: Vec<String>,
}

/// Compute what `production new KIND NAME` writes in `workspace`; `config` relative to it.
pub fn plan(
    kind: Kind,
    name: &str,
    workspace: &Path,
    config: &Path,
    message: Option<&str>,
) -> Result<Plan, ScaffoldError> {
    validate_name(name).map_err(usage)?;
    let ws = Workspace::read(workspace)?;
    let crate_dir = workspace.join("crates").join(name);
    if crate_dir.exists() || fs::symlink_metadata(&crate_dir).is_ok() {
        return Err(usage(format!(
            "crates/{name} already exists in {}; choose another name",
            workspace.display()
        )));
    }
    if let Some(c) = ws.crates.iter().find(|c| c.package == name) {
        return Err(usage(format!(
            "a crate named '{name}' already exists (crates/{}); choose another name",
            c.dir
        )));
    }
    let registry = crate::registry();
    if registry.class(name).is_some() {
        return Err(usage(format!(
            "class '{name}' is already registered in the production; choose another name"
        )));
    }
    if let Some((_, dir)) = ws.class_names().into_iter().find(|(c, _)| c == name) {
        return Err(usage(format!(
            "class '{name}' is already declared by crates/{dir}; choose another name"
        )));
    }
    let names = Names::new(kind, name);

    let config = if config.is_absolute() {
        config.to_path_buf()
    } else {
        workspace.join(config)
    };
    let config_text = fs::read_to_string(&config).map_err(|e| {
        usage(format!(
            "cannot read the config {}: {e} (pass --config FILE, relative to the workspace)",
            config.display()
        ))
    })?;
    let parsed = ProductionConfig::parse(&config_text, &config.display().to_string())
        .map_err(|e| usage(format!("the config does not parse: {e}")))?;
    if parsed.item(&names.struct_name).is_some() {
        return Err(usage(format!(
            "{} already has an item named '{}'; choose another name",
            config.display(),
            names.struct_name
        )));
    }

    let message = match message {
        Some(type_name) => resolve_message(&ws, type_name, name).map_err(usage)?,
        None => {
            let mut taken: BTreeSet<String> = ws.type_names().into_iter().map(|(t, _)| t).collect();
            taken.extend(registry.types().names().map(str::to_string));
            own_message(&names, &taken).map_err(usage)?
        }
    };
    if [&names.struct_name, &names.request_set].contains(&&message.type_name) {
        return Err(usage(format!(
            "--message '{}' has the name of the host or of its request set; choose another",
            message.type_name
        )));
    }

    let production_toml = workspace.join("crates/production/Cargo.toml");
    let manifest = read(&production_toml)?;
    let dependency = format!("{name} = {{ path = \"../{name}\" }}");
    let manifest_updated = add_dependency(&manifest, name, &dependency).map_err(|e| {
        usage(format!(
            "cannot add the dependency to {}: {e}",
            production_toml.display()
        ))
    })?;

    let lib_path = workspace.join("crates/production/src/lib.rs");
    let lib = read(&lib_path)?;
    let lib_updated = insert_registration(&lib, &names.snake).map_err(|e| {
        usage(format!(
            "cannot register the class in {}: {e}; it does not look as expected, so it is \
             left as is",
            lib_path.display()
        ))
    })?;

    let item = item_text(kind, &names);
    let config_updated = append_item(&config_text, &item);
    let reparsed = ProductionConfig::parse(&config_updated, &config.display().to_string())
        .map_err(|e| {
            usage(format!(
                "appending the item would break {}: {e}",
                config.display()
            ))
        })?;
    let appended_ok = reparsed.items.len() == parsed.items.len() + 1
        && reparsed
            .items
            .last()
            .is_some_and(|i| i.name == names.struct_name && i.class == name && !i.enabled);
    if !appended_ok {
        return Err(usage(format!(
            "appending [[item]] to {} would not add it as the last item (is `item` written \
             in another form there?)",
            config.display()
        )));
    }

    let mut notes = Vec::new();
    let lib_rs = render_lib_rs(kind, &names, &message);
    // The template's line breaks fit typical names; rustfmt fits them to these.
    let lib_rs = match rustfmt(&lib_rs, workspace) {
        Ok(formatted) => formatted,
        Err(e) => {
            notes.push(format!(
                "rustfmt did not run ({e}): run `cargo fmt -p {name}` before committing"
            ));
            lib_rs
        }
    };
    let files = vec![
        (
            crate_dir.join("Cargo.toml"),
            render_cargo_toml(kind, &names, &message),
        ),
        (crate_dir.join("src/lib.rs"), lib_rs),
    ];
    let edits = vec![
        Edit {
            path: production_toml,
            original: manifest,
            updated: manifest_updated,
            what: format!("dependency {dependency}"),
        },
        Edit {
            path: lib_path,
            original: lib,
            updated: lib_updated,
            what: format!("{}::register(&mut registry) in registry()", names.snake),
        },
        Edit {
            path: config.clone(),
            original: config_text,
            updated: config_updated,
            what: format!("item {}, enabled = false", names.struct_name),
        },
    ];
    Ok(Plan {
        kind,
        names,
        message,
        workspace: workspace.to_path_buf(),
        crate_dir,
        files,
        edits,
        config,
        notes,
    })
}

/// Format Rust source with the workspace's rustfmt (its `rust-toolchain.toml` applies).
pub fn rustfmt(source: &str, workspace: &Path) -> Result<String, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .current_dir(workspace)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start rustfmt: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(source.as_bytes())
            .map_err(|e| format!("writing to rustfmt: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("rustfmt: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("rustfmt output: {e}"))
}

fn read(path: &Path) -> Result<String, ScaffoldError> {
    fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

/// What `apply` did, to undo.
enum Done {
    CreatedDir(PathBuf),
    Edited { path: PathBuf, original: String },
}

impl Plan {
    /// Write the plan: create the crate, then the edits. On an error, undo what was done
    /// (best effort) and say what was and was not undone.
    pub fn apply(&self) -> Result<(), ScaffoldError> {
        let mut done = Vec::new();
        match self.write(&mut done) {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut text = format!("{e}\n");
                text.push_str(&undo(&done, &self.workspace));
                Err(ScaffoldError::Failed(text.trim_end().to_string()))
            }
        }
    }

    fn write(&self, done: &mut Vec<Done>) -> Result<(), String> {
        let shown = |p: &Path| shown(p, &self.workspace);
        fs::create_dir(&self.crate_dir)
            .map_err(|e| format!("cannot create {}: {e}", shown(&self.crate_dir)))?;
        done.push(Done::CreatedDir(self.crate_dir.clone()));
        for (path, text) in &self.files {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", shown(dir)))?;
            }
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", shown(path)))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", shown(path)))?;
        }
        for edit in &self.edits {
            let current = fs::read_to_string(&edit.path)
                .map_err(|e| format!("cannot read {}: {e}", shown(&edit.path)))?;
            if current != edit.original {
                return Err(format!(
                    "{} changed while `production new` ran; it was left as is",
                    shown(&edit.path)
                ));
            }
            // Recorded first: a write that fails halfway is restored too.
            done.push(Done::Edited {
                path: edit.path.clone(),
                original: edit.original.clone(),
            });
            fs::write(&edit.path, &edit.updated)
                .map_err(|e| format!("cannot write {}: {e}", shown(&edit.path)))?;
        }
        Ok(())
    }

    /// What was created and changed, and the next steps.
    pub fn summary(&self) -> String {
        let n = &self.names;
        let shown = |p: &Path| shown(p, &self.workspace);
        let role = if self.kind == Kind::Service {
            "sends"
        } else {
            "handles"
        };
        let mut out = format!(
            "created {} {} (class \"{}\", crate {}); it {role} {} ({})\n",
            self.kind.as_str(),
            n.struct_name,
            n.crate_name,
            n.crate_name,
            self.message.type_name,
            self.message.origin,
        );
        let width = self
            .files
            .iter()
            .map(|(p, _)| shown(p).len())
            .chain(self.edits.iter().map(|e| shown(&e.path).len()))
            .max()
            .unwrap_or(0);
        for (path, _) in &self.files {
            let _ = writeln!(out, "  new      {}", shown(path));
        }
        for edit in &self.edits {
            let _ = writeln!(
                out,
                "  changed  {:<width$}  {}",
                shown(&edit.path),
                edit.what
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let config = shown(&self.config);
        let _ = write!(
            out,
            "next steps:\n  \
             1. cargo test -p {crate_name}\n  \
             2. write the handler: {handler} in crates/{crate_name}/src/lib.rs (and its test)\n  \
             3. set enabled = true on item {item} in {config}, and its settings\n  \
             4. cargo run -p production -- validate --config {config}\n",
            crate_name = n.crate_name,
            handler = self.kind.handler(),
            item = n.struct_name,
        );
        out
    }
}

/// Undo in reverse order; one line per step.
fn undo(done: &[Done], workspace: &Path) -> String {
    if done.is_empty() {
        return "nothing had been written".into();
    }
    let mut out = String::from("undoing what was written:\n");
    for step in done.iter().rev() {
        let line = match step {
            Done::Edited { path, original } => match fs::write(path, original) {
                Ok(()) => format!("  restored {}", shown(path, workspace)),
                Err(e) => format!(
                    "  could NOT restore {}: {e} (restore it by hand, e.g. git checkout)",
                    shown(path, workspace)
                ),
            },
            Done::CreatedDir(dir) => match fs::remove_dir_all(dir) {
                Ok(()) => format!("  removed {}", shown(dir, workspace)),
                Err(e) => format!(
                    "  could NOT remove {}: {e} (remove it by hand)",
                    shown(dir, workspace)
                ),
            },
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A path relative to the workspace when it is inside it.
fn shown(path: &Path, workspace: &Path) -> String {
    path.strip_prefix(workspace)
        .unwrap_or(path)
        .display()
        .to_string()
}
