//! `production new`: the pure parts (names, generated text, the edits of registry(),
//! Cargo.toml and the config), plan/apply/undo on a small fake workspace, and one
//! end-to-end run that creates an operation, a process and a service in a copy of this
//! workspace, then validates the config and runs the new crates' tests with cargo.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use interop::ProductionConfig;
use production::scaffold::{
    add_dependency, append_item, insert_registration, item_text, own_message, plan,
    render_cargo_toml, render_lib_rs, resolve_message, rustfmt, validate_name, CrateSource, Kind,
    MessageSpec, Names, ScaffoldError, Workspace, ITEM_COMMENT,
};

/// The workspace this test belongs to.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Names

#[test]
fn names_are_validated_with_errors_saying_what_is_wrong() {
    for good in ["op-audit", "ab", "svc-x-2", "proc-a1b2"] {
        assert_eq!(validate_name(good), Ok(()), "{good}");
    }
    let cases = [
        ("", "empty"),
        ("a", "at least 2"),
        ("Op-audit", "start with a lowercase letter"),
        ("1op", "start with a lowercase letter"),
        ("op_audit", "contains '_'"),
        ("op audit", "contains ' '"),
        ("op-", "end with a letter or a digit"),
        ("op--audit", "contains '--'"),
        ("type", "keyword"),
        ("interop", "reserved"),
    ];
    for (bad, why) in cases {
        let err = validate_name(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
        if !bad.is_empty() {
            assert!(err.contains(&format!("'{bad}'")), "{bad:?}: {err}");
        }
    }
}

#[test]
fn names_drop_the_kind_prefix_and_append_the_kind() {
    let n = Names::new(Kind::Operation, "op-audit");
    assert_eq!(n.crate_name, "op-audit");
    assert_eq!(n.snake, "op_audit");
    assert_eq!(n.struct_name, "AuditOperation");
    assert_eq!(n.request_set, "AuditOperationRequest");
    assert_eq!(n.own_message, "AuditRequest");
    assert_eq!(n.own_message_fallback, "OpAuditRequest");
    assert_eq!(
        Names::new(Kind::Process, "proc-audit").struct_name,
        "AuditProcess"
    );
    assert_eq!(
        Names::new(Kind::Service, "svc-audit-2").struct_name,
        "Audit2Service"
    );
    assert_eq!(
        Names::new(Kind::Operation, "audit").struct_name,
        "AuditOperation"
    );
    // Another kind's prefix is kept; the kind is not doubled.
    assert_eq!(
        Names::new(Kind::Operation, "svc-x").struct_name,
        "SvcXOperation"
    );
    assert_eq!(
        Names::new(Kind::Operation, "op-audit-operation").struct_name,
        "AuditOperation"
    );
    // A Rust name cannot start with a digit.
    let n = Names::new(Kind::Operation, "op-2x");
    assert_eq!(n.struct_name, "Op2xOperation");
    assert_eq!(n.own_message, "Op2xRequest");
}

#[test]
fn the_default_message_type_avoids_names_already_taken() {
    let names = Names::new(Kind::Process, "proc-audit");
    let mut taken = BTreeSet::new();
    assert_eq!(
        own_message(&names, &taken).unwrap().type_name,
        "AuditRequest"
    );
    taken.insert("AuditRequest".to_string());
    let m = own_message(&names, &taken).unwrap();
    assert_eq!(m.type_name, "ProcAuditRequest");
    assert!(m.own);
    taken.insert("ProcAuditRequest".to_string());
    let err = own_message(&names, &taken).unwrap_err();
    assert!(err.contains("--message"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Message types

fn fake_workspace() -> Workspace {
    let messages = r#"
use interop::{Message, Registry};
pub struct Formation { pub id: i64 }
pub struct FormationRequest { pub formation: Formation }
impl Message for FormationRequest {
    const TYPE_NAME: &'static str = "FormationRequest";
    fn example() -> Option<Self> {
        Some(FormationRequest { formation: Formation { id: 1 } })
    }
}
pub struct FormationStored { pub id: i64 }
impl Message for FormationStored {
    const TYPE_NAME: &'static str = "FormationStored";
}
"#;
    let op = r#"
pub struct AuditRequest { pub text: String }
impl interop::Message for AuditRequest {
    const TYPE_NAME: &'static str = "AuditRequest";
    fn example() -> Option<Self> { None }
}
"#;
    Workspace {
        root: PathBuf::from("/nowhere"),
        workspace_deps: ["interop", "serde", "formation-messages"]
            .into_iter()
            .map(String::from)
            .collect(),
        crates: vec![
            CrateSource {
                dir: "messages".into(),
                package: "formation-messages".into(),
                lib_rs: Some(messages.into()),
                sources: vec![messages.into()],
                uses_production: false,
            },
            CrateSource {
                dir: "op-audit".into(),
                package: "op-audit".into(),
                lib_rs: Some(op.into()),
                sources: vec![op.into()],
                uses_production: false,
            },
            CrateSource {
                dir: "tutorial".into(),
                package: "tutorial".into(),
                lib_rs: Some("pub struct Lesson;\nimpl Message for Lesson {\n    fn example() -> Option<Self> { None }\n}\n".into()),
                sources: vec![],
                uses_production: true,
            },
        ],
    }
}

#[test]
fn message_types_are_found_in_workspace_crates_with_their_dependency() {
    let ws = fake_workspace();
    let m = resolve_message(&ws, "FormationRequest", "op-new").unwrap();
    assert_eq!(
        m.use_path.as_deref(),
        Some("formation_messages::FormationRequest")
    );
    assert_eq!(
        m.dependency.as_deref(),
        Some("formation-messages.workspace = true")
    );
    assert!(!m.own);
    assert_eq!(m.variant(), "Formation");
    // A crate not in [workspace.dependencies] is a path dependency.
    let m = resolve_message(&ws, "AuditRequest", "op-new").unwrap();
    assert_eq!(m.use_path.as_deref(), Some("op_audit::AuditRequest"));
    assert_eq!(
        m.dependency.as_deref(),
        Some("op-audit = { path = \"../op-audit\" }")
    );
    let ack = resolve_message(&ws, "Ack", "op-new").unwrap();
    assert_eq!((ack.use_path, ack.dependency), (None, None));
    let alert = resolve_message(&ws, "AlertRequest", "op-new").unwrap();
    assert_eq!(
        alert.use_path.as_deref(),
        Some("interop::message::AlertRequest")
    );
    assert_eq!(alert.variant(), "Alert");

    let err = resolve_message(&ws, "FormationStored", "op-new").unwrap_err();
    assert!(err.contains("fn example()"), "{err}");
    assert!(err.contains("crates/messages/src/lib.rs"), "{err}");
    let err = resolve_message(&ws, "Lesson", "op-new").unwrap_err();
    assert!(err.contains("cycle"), "{err}");
    let err = resolve_message(&ws, "Nope", "op-new").unwrap_err();
    assert!(err.contains("'Nope'"), "{err}");
    assert!(
        err.contains("FormationRequest"),
        "lists the known types: {err}"
    );
    let err = resolve_message(&ws, "formation_messages::X", "op-new").unwrap_err();
    assert!(err.contains("no path"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Generated text

fn variants() -> Vec<(Kind, Names, MessageSpec)> {
    let foreign = MessageSpec {
        type_name: "FormationRequest".into(),
        own: false,
        use_path: Some("formation_messages::FormationRequest".into()),
        dependency: Some("formation-messages.workspace = true".into()),
        origin: "crate formation-messages".into(),
    };
    let mut out = Vec::new();
    for (kind, name) in [
        (Kind::Operation, "op-audit"),
        (Kind::Process, "proc-audit"),
        (Kind::Service, "svc-audit"),
    ] {
        let names = Names::new(kind, name);
        out.push((kind, names.clone(), MessageSpec::own("AuditRequest")));
        out.push((kind, names, foreign.clone()));
    }
    out
}

#[test]
fn generated_files_name_the_crate_the_host_and_the_message() {
    for (kind, names, message) in variants() {
        let label = format!("{kind:?} {}", message.type_name);
        let lib = render_lib_rs(kind, &names, &message);
        let cargo = render_cargo_toml(kind, &names, &message);
        assert!(!lib.contains("{{") && !cargo.contains("{{"), "{label}");
        assert!(
            lib.starts_with(&format!(
                "//! {}: a business {}",
                names.crate_name,
                kind_word(kind)
            )),
            "{label}: {}",
            lib.lines().next().unwrap_or_default()
        );
        let trait_name = match kind {
            Kind::Operation => "BusinessOperation",
            Kind::Process => "BusinessProcess",
            Kind::Service => "BusinessService",
        };
        for needle in [
            format!("pub const CLASS: &str = \"{}\";", names.crate_name),
            "#[serde(deny_unknown_fields)]\npub struct Settings".to_string(),
            format!("pub struct {} {{", names.struct_name),
            format!("impl {trait_name} for {} {{", names.struct_name),
            "pub fn register(registry: &mut Registry) {".to_string(),
            "#[cfg(test)]\nmod tests {".to_string(),
            "TestContext::new()".to_string(),
        ] {
            assert!(lib.contains(&needle), "{label}: no {needle:?}");
        }
        let every_field_documented = lib
            .split("pub struct Settings {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .map(|body| {
                let lines: Vec<&str> = body.lines().map(str::trim).collect();
                lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.starts_with("pub "))
                    .all(|(i, _)| lines[..i].iter().rev().any(|l| l.starts_with("///")))
            });
        assert_eq!(every_field_documented, Some(true), "{label}");
        if kind == Kind::Service {
            assert!(lib.contains("fn call_interval(&self)"), "{label}");
            assert!(lib.contains("call_interval_ms"), "{label}");
            assert!(!lib.contains("request_set!"), "{label}");
        } else {
            assert!(
                lib.contains(&format!(
                    "pub enum {} {{ {}({}) }}",
                    names.request_set,
                    message.variant(),
                    message.type_name
                )),
                "{label}"
            );
        }
        if kind != Kind::Operation {
            assert!(
                lib.contains(&format!(
                    "Target::sends::<{}>(\"target\")",
                    message.type_name
                )),
                "{label}"
            );
        }
        assert!(
            cargo.contains(&format!("name = \"{}\"", names.crate_name)),
            "{label}"
        );
        for line in [
            "version.workspace = true",
            "edition.workspace = true",
            "license.workspace = true",
            "interop.workspace = true",
            "serde.workspace = true",
            "[dev-dependencies]\nactix-rt.workspace = true",
        ] {
            assert!(cargo.contains(line), "{label}: no {line:?}");
        }
        if message.own {
            assert!(lib.contains("pub struct AuditRequest {"), "{label}");
            assert!(
                lib.contains("const TYPE_NAME: &'static str = \"AuditRequest\";"),
                "{label}"
            );
            assert!(!cargo.contains("formation-messages"), "{label}");
        } else {
            assert!(
                lib.contains("use formation_messages::FormationRequest;"),
                "{label}"
            );
            assert!(!lib.contains("pub struct FormationRequest"), "{label}");
            assert!(
                cargo.contains("formation-messages.workspace = true"),
                "{label}"
            );
        }
    }
}

fn kind_word(kind: Kind) -> &'static str {
    kind.as_str()
}

#[test]
fn generated_sources_are_valid_and_already_formatted() {
    let root = workspace_root();
    for (kind, names, message) in variants() {
        let lib = render_lib_rs(kind, &names, &message);
        let formatted = rustfmt(&lib, &root)
            .unwrap_or_else(|e| panic!("{kind:?} {}: {e}\n{lib}", message.type_name));
        assert_eq!(
            formatted, lib,
            "{kind:?} {}: the template is not rustfmt-clean",
            message.type_name
        );
    }
}

// ---------------------------------------------------------------------------------------
// Edits

const LIB_RS: &str = "\
pub mod api;

use interop::Registry;

/// Every class this binary can run.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    formation_messages::register(&mut registry);
    op_file::register(&mut registry);

    registry
}

#[cfg(test)]
mod tests {
    fn registry() {}
}
";

#[test]
fn registration_goes_last_in_registry_before_its_final_expression() {
    let out = insert_registration(LIB_RS, "op_audit").unwrap();
    assert_eq!(
        out,
        LIB_RS.replace(
            "\n\n    registry\n",
            "\n\n    op_audit::register(&mut registry);\n    registry\n"
        )
    );
    // Twice is refused.
    let err = insert_registration(&out, "op_audit").unwrap_err();
    assert!(err.contains("already has `op_audit::register"), "{err}");
    // CRLF files stay CRLF.
    let crlf = LIB_RS.replace('\n', "\r\n");
    let out = insert_registration(&crlf, "op_audit").unwrap();
    assert!(out.contains("    op_audit::register(&mut registry);\r\n    registry\r\n"));
    assert_eq!(out.matches('\n').count(), out.matches("\r\n").count());

    // Text that does not look as expected is refused, naming what is off.
    let no_fn = LIB_RS.replace("pub fn registry()", "pub fn classes()");
    let err = insert_registration(&no_fn, "op_audit").unwrap_err();
    assert!(err.contains("pub fn registry() -> Registry {"), "{err}");
    let builder = LIB_RS.replace("\n    registry\n}", "\n    registry.done()\n}");
    let err = insert_registration(&builder, "op_audit").unwrap_err();
    assert!(err.contains("registry.done()"), "{err}");
    let unclosed = "pub fn registry() -> Registry {\n    let mut registry = Registry::new();\n";
    assert!(insert_registration(unclosed, "op_audit").is_err());
}

#[test]
fn registration_works_on_the_real_lib_rs() {
    let path = workspace_root().join("crates/production/src/lib.rs");
    let text = fs::read_to_string(path).unwrap();
    let out = insert_registration(&text, "op_audit").unwrap();
    assert_eq!(
        out.len(),
        text.len() + "    op_audit::register(&mut registry);\n".len()
    );
    assert!(out.contains("    op_audit::register(&mut registry);\n    registry\n}"));
}

#[test]
fn the_dependency_goes_at_the_end_of_dependencies() {
    let manifest = "[package]\nname = \"production\"\n\n[dependencies]\ninterop.workspace = true\nportal = { path = \"../portal\" }\n\n[dev-dependencies]\ntempfile.workspace = true\n";
    let line = "op-audit = { path = \"../op-audit\" }";
    let out = add_dependency(manifest, "op-audit", line).unwrap();
    assert_eq!(
        out,
        manifest.replace(
            "portal = { path = \"../portal\" }\n",
            "portal = { path = \"../portal\" }\nop-audit = { path = \"../op-audit\" }\n"
        )
    );
    let err = add_dependency(&out, "op-audit", line).unwrap_err();
    assert!(err.contains("already has `op-audit`"), "{err}");
    let err = add_dependency(manifest, "interop", "interop = \"1\"").unwrap_err();
    assert!(err.contains("interop"), "{err}");
    // Last section, no final newline.
    let last = "[package]\nname = \"x\"\n[dependencies]\nserde = \"1\"";
    assert_eq!(
        add_dependency(last, "op-audit", line).unwrap(),
        format!("{last}\n{line}\n")
    );
    assert!(add_dependency("[package]\n", "op-audit", line)
        .unwrap_err()
        .contains("[dependencies]"));
}

#[test]
fn the_item_is_appended_and_the_config_kept_byte_for_byte() {
    let path = workspace_root().join("config/production.toml");
    let original = fs::read_to_string(&path).unwrap();
    let before = ProductionConfig::parse(&original, "production.toml").unwrap();
    for kind in [Kind::Operation, Kind::Process, Kind::Service] {
        let name = format!("{}-audit", ["op", "proc", "svc"][kind as usize]);
        let names = Names::new(kind, &name);
        let out = append_item(&original, &item_text(kind, &names));
        assert!(out.starts_with(&original), "{kind:?}");
        let after = ProductionConfig::parse(&out, "production.toml").unwrap();
        assert_eq!(after.items.len(), before.items.len() + 1);
        let item = after.items.last().unwrap();
        assert_eq!(item.name, names.struct_name);
        assert_eq!(item.class, name);
        assert!(!item.enabled);
        assert_eq!(item.comment.as_deref(), Some(ITEM_COMMENT));
        let keys: Vec<&str> = item.settings.keys().map(String::as_str).collect();
        let expected: &[&str] = match kind {
            Kind::Operation => &["prefix"],
            Kind::Process => &["target"],
            Kind::Service => &["call_interval_ms", "target"],
        };
        assert_eq!(keys, expected, "{kind:?}");
    }
    // A file without a final newline keeps its bytes too.
    let text = "[production]\nname = \"P\"";
    let out = append_item(
        text,
        &item_text(Kind::Process, &Names::new(Kind::Process, "p-x")),
    );
    assert!(out.starts_with(text));
    assert_eq!(ProductionConfig::parse(&out, "x").unwrap().items.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Plan and apply on a small fake workspace (no cargo)

/// A workspace with the files `new` reads: the real production lib.rs and config.
fn fake_workspace_on_disk() -> tempfile::TempDir {
    let real = workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"crates/*\"]\n\n[workspace.package]\n\
         version = \"0.1.0\"\nedition = \"2021\"\n\n[workspace.dependencies]\n\
         interop = { path = \"crates/interop\" }\nserde = \"1\"\nactix-rt = \"2\"\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("crates/production/src")).unwrap();
    fs::create_dir_all(root.join("config")).unwrap();
    for file in [
        "crates/production/Cargo.toml",
        "crates/production/src/lib.rs",
        "config/production.toml",
    ] {
        fs::copy(real.join(file), root.join(file)).unwrap();
    }
    dir
}

fn usage_error(result: Result<production::scaffold::Plan, ScaffoldError>) -> String {
    match result {
        Err(ScaffoldError::Usage(e)) => e,
        Err(other) => panic!("expected a usage error, got {other:?}"),
        Ok(_) => panic!("expected a usage error"),
    }
}

#[test]
fn new_writes_the_crate_and_the_three_edits() {
    let dir = fake_workspace_on_disk();
    let root = dir.path();
    let config = Path::new("config/production.toml");
    let originals: Vec<String> = [
        "crates/production/Cargo.toml",
        "crates/production/src/lib.rs",
        "config/production.toml",
    ]
    .iter()
    .map(|f| fs::read_to_string(root.join(f)).unwrap())
    .collect();
    let p = plan(Kind::Operation, "op-audit", root, config, None).unwrap();
    p.apply().unwrap();
    let lib = fs::read_to_string(root.join("crates/op-audit/src/lib.rs")).unwrap();
    assert!(lib.contains("pub struct AuditOperation {"));
    assert!(root.join("crates/op-audit/Cargo.toml").is_file());
    let manifest = fs::read_to_string(root.join("crates/production/Cargo.toml")).unwrap();
    assert!(manifest.contains("\nop-audit = { path = \"../op-audit\" }\n"));
    let registry = fs::read_to_string(root.join("crates/production/src/lib.rs")).unwrap();
    assert!(registry.contains("    op_audit::register(&mut registry);\n    registry\n}"));
    let config_text = fs::read_to_string(root.join(config)).unwrap();
    assert!(config_text.starts_with(&originals[2]));
    assert!(
        config_text.contains("name = \"AuditOperation\"\nclass = \"op-audit\"\nenabled = false\n")
    );
    let summary = p.summary();
    for needle in [
        "crates/op-audit/src/lib.rs",
        "cargo test -p op-audit",
        "on_message",
        "enabled = true on item AuditOperation",
        "validate --config config/production.toml",
    ] {
        assert!(summary.contains(needle), "no {needle:?} in\n{summary}");
    }

    // Nothing is overwritten: the same name again, or a taken class, crate or item.
    let err = usage_error(plan(Kind::Operation, "op-audit", root, config, None));
    assert!(err.contains("crates/op-audit already exists"), "{err}");
    let err = usage_error(plan(Kind::Operation, "op-file", root, config, None));
    assert!(
        err.contains("class 'op-file' is already registered"),
        "{err}"
    );
    // `audit` gives the struct AuditOperation, an item the config now has.
    let err = usage_error(plan(Kind::Operation, "audit", root, config, None));
    assert!(
        err.contains("already has an item named 'AuditOperation'"),
        "{err}"
    );
    let err = usage_error(plan(Kind::Operation, "Op", root, config, None));
    assert!(err.contains("'Op'"), "{err}");
    let err = usage_error(plan(
        Kind::Process,
        "proc-x",
        root,
        Path::new("nope.toml"),
        None,
    ));
    assert!(err.contains("nope.toml"), "{err}");
    let err = usage_error(plan(
        Kind::Process,
        "proc-x",
        &root.join("crates"),
        config,
        None,
    ));
    assert!(err.contains("--workspace"), "{err}");

    // A second crate sees the first one's message type as taken.
    let p = plan(Kind::Process, "proc-audit", root, config, None).unwrap();
    assert_eq!(p.message.type_name, "ProcAuditRequest");
    // ... and can use it by name, as a path dependency.
    let p = plan(
        Kind::Process,
        "proc-relay",
        root,
        config,
        Some("AuditRequest"),
    )
    .unwrap();
    assert_eq!(
        p.message.dependency.as_deref(),
        Some("op-audit = { path = \"../op-audit\" }")
    );
    // Planning wrote nothing.
    assert!(!root.join("crates/proc-audit").exists());
    assert!(fs::read_to_string(root.join(config)).unwrap() == config_text);
}

#[test]
fn a_failed_step_undoes_the_steps_before_it() {
    let dir = fake_workspace_on_disk();
    let root = dir.path();
    let config = Path::new("config/production.toml");
    let manifest = fs::read_to_string(root.join("crates/production/Cargo.toml")).unwrap();
    let lib = fs::read_to_string(root.join("crates/production/src/lib.rs")).unwrap();

    // The config is gone by the time it is written: the crate and the two edits before
    // it are undone.
    let mut p = plan(Kind::Service, "svc-audit", root, config, None).unwrap();
    p.edits[2].path = root.join("config/missing/production.toml");
    let err = match p.apply() {
        Err(ScaffoldError::Failed(e)) => e,
        other => panic!("expected a failure, got {other:?}"),
    };
    assert!(err.contains("config/missing/production.toml"), "{err}");
    assert!(
        err.contains("restored crates/production/src/lib.rs"),
        "{err}"
    );
    assert!(
        err.contains("restored crates/production/Cargo.toml"),
        "{err}"
    );
    assert!(err.contains("removed crates/svc-audit"), "{err}");
    assert!(!root.join("crates/svc-audit").exists());
    assert_eq!(
        fs::read_to_string(root.join("crates/production/Cargo.toml")).unwrap(),
        manifest
    );
    assert_eq!(
        fs::read_to_string(root.join("crates/production/src/lib.rs")).unwrap(),
        lib
    );

    // A file changed between planning and writing is left as is, and the rest undone.
    let p = plan(Kind::Service, "svc-audit", root, config, None).unwrap();
    let edited = format!("{lib}// someone else's edit\n");
    fs::write(root.join("crates/production/src/lib.rs"), &edited).unwrap();
    let err = match p.apply() {
        Err(ScaffoldError::Failed(e)) => e,
        other => panic!("expected a failure, got {other:?}"),
    };
    assert!(err.contains("changed while `production new` ran"), "{err}");
    assert_eq!(
        fs::read_to_string(root.join("crates/production/src/lib.rs")).unwrap(),
        edited
    );
    assert_eq!(
        fs::read_to_string(root.join("crates/production/Cargo.toml")).unwrap(),
        manifest
    );
    assert!(!root.join("crates/svc-audit").exists());
}

// ---------------------------------------------------------------------------------------
// End to end

/// Copy `from` to `to`, leaving out `target` folders, with the files' modification times
/// (so cargo's cache of the unchanged crates stays valid in the copy).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&path, &dest);
            }
        } else if kind.is_file() {
            copy_file(&path, &dest);
        }
    }
}

fn copy_file(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap();
    let modified: SystemTime = fs::metadata(from).unwrap().modified().unwrap();
    let file = fs::File::options().write(true).open(to).unwrap();
    file.set_modified(modified).unwrap();
}

/// Run a command; panic with its output when it fails. Returns stdout.
fn run(label: &str, command: &mut Command) -> String {
    let started = Instant::now();
    let output = command.output().unwrap_or_else(|e| panic!("{label}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    eprintln!("{label}: {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "{label} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}

/// Builds a copy of the workspace (a minute with a warm target dir, far more cold), so
/// `scripts/test` runs it on its own, with `SCAFFOLD_TARGET_DIR` pointing at the main
/// target dir, where every dependency is already built.
#[test]
#[ignore = "builds a copy of the workspace; scripts/test runs it (scaffold step)"]
fn new_crates_build_validate_and_pass_their_tests_in_a_copy_of_the_workspace() {
    let started = Instant::now();
    let real = workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    for file in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        copy_file(&real.join(file), &ws.join(file));
    }
    for folder in ["crates", "migrations", "config"] {
        copy_tree(&real.join(folder), &ws.join(folder));
    }
    let bin = env!("CARGO_BIN_EXE_production");
    let new = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("new")
            .args(args)
            .current_dir(ws)
            .env_remove("INTEROP_CONFIG");
        c
    };
    let out = run(
        "new operation op-audit",
        &mut new(&["operation", "op-audit"]),
    );
    assert!(out.contains("cargo test -p op-audit"), "{out}");
    run(
        "new process proc-audit",
        &mut new(&["process", "proc-audit"]),
    );
    run("new service svc-audit", &mut new(&["service", "svc-audit"]));
    // Another process handling the operation's type, run from elsewhere with --workspace.
    let mut relay = new(&["process", "proc-relay", "--message", "AuditRequest"]);
    relay
        .arg("--workspace")
        .arg(ws)
        .current_dir(std::env::temp_dir());
    run("new process proc-relay --message AuditRequest", &mut relay);
    // A taken name is refused with exit code 2 and nothing changes.
    let config_before = fs::read(ws.join("config/production.toml")).unwrap();
    let refused = new(&["operation", "op-audit"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exists"));
    assert_eq!(
        fs::read(ws.join("config/production.toml")).unwrap(),
        config_before
    );

    let target = std::env::var_os("SCAFFOLD_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| real.join("target/scaffold-test"));
    let cargo = |args: &[&str]| {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(args)
            .current_dir(ws)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("INTEROP_CONFIG");
        c
    };
    let crates = ["op-audit", "proc-audit", "svc-audit", "proc-relay"];
    let packages: Vec<&str> = crates.iter().flat_map(|c| ["-p", *c]).collect();

    let mut fmt = cargo(&["fmt", "--check"]);
    fmt.args(&packages);
    run("cargo fmt --check (new crates)", &mut fmt);

    let validated = run(
        "cargo run -p production -- validate",
        &mut cargo(&[
            "run",
            "-q",
            "-p",
            "production",
            "--",
            "validate",
            "--config",
            "config/production.toml",
        ]),
    );
    for item in [
        "AuditOperation",
        "AuditProcess",
        "AuditService",
        "RelayProcess",
    ] {
        assert!(
            validated
                .lines()
                .any(|l| l.contains(item) && l.ends_with("(disabled)")),
            "{item} not validated as a disabled item:\n{validated}"
        );
    }

    let mut test = cargo(&["test"]);
    test.args(&packages);
    let tested = run("cargo test (new crates)", &mut test);
    assert_eq!(
        tested.matches("test result: ok. 2 passed").count(),
        crates.len(),
        "{tested}"
    );

    let mut clippy = cargo(&["clippy"]);
    clippy
        .args(&packages)
        .args(["--all-targets", "--", "-D", "warnings"]);
    run("cargo clippy -D warnings (new crates)", &mut clippy);
    let cleanup = Instant::now();
    dir.close().unwrap();
    eprintln!(
        "end to end: {:.1}s (removing the copy: {:.1}s)",
        started.elapsed().as_secs_f64(),
        cleanup.elapsed().as_secs_f64()
    );
}
