//! `docs/tutorial.md` stays true: its code blocks are the code of this crate (and of the
//! files they name), its line counts are measured, the validate error it shows is the
//! one `validate` gives, and the production it ends with runs as it says.
//!
//! After changing the code: `TUTORIAL_BLESS=1 cargo test -p tutorial` rewrites the blocks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use formation_messages::{Formation, FormationRequest, FormationResponse};
use interop::{AnyMessage, Production, ProductionConfig};
use tutorial::doc_sync::{self, TUTORIAL};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn blessing() -> bool {
    std::env::var("TUTORIAL_BLESS").is_ok_and(|v| v == "1")
}

fn read_tutorial() -> String {
    std::fs::read_to_string(root().join(TUTORIAL))
        .unwrap_or_else(|e| panic!("cannot read {TUTORIAL}: {e}"))
}

#[test]
fn every_code_block_is_the_code_it_names() {
    let root = root();
    let markdown = read_tutorial();
    if blessing() {
        match doc_sync::bless(&root, &markdown) {
            Ok(text) if text == markdown => println!("{TUTORIAL} is up to date"),
            Ok(text) => {
                std::fs::write(root.join(TUTORIAL), text)
                    .unwrap_or_else(|e| panic!("cannot write {TUTORIAL}: {e}"));
                println!("{TUTORIAL} rewritten from the sources");
            }
            Err(problems) => panic!("cannot bless {TUTORIAL}:\n{}", problems.join("\n")),
        }
        return;
    }
    let (blocks, _) = doc_sync::parse(&markdown);
    assert!(blocks.len() > 20, "only {} included blocks", blocks.len());
    let problems = doc_sync::check(&root, &markdown);
    assert!(
        problems.is_empty(),
        "{} problem(s) in {TUTORIAL} (after changing the code, run \
         `TUTORIAL_BLESS=1 cargo test -p tutorial`):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn the_line_counts_it_states_are_measured() {
    if blessing() {
        return; // written by the blessing test
    }
    let (rust, python) = doc_sync::measured_line_counts(&root()).unwrap();
    println!("FileOperation: {rust} lines of Rust, {python} lines of Python");
    let problems = doc_sync::check_line_counts(&root(), &read_tutorial());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn tutorial_config() -> ProductionConfig {
    ProductionConfig::load(&root().join("crates/tutorial/tutorial.toml")).unwrap()
}

#[test]
fn the_shipped_and_the_tutorial_configs_are_valid_and_validate_shows_the_contract_error() {
    let registry = tutorial::registry();
    let shipped = ProductionConfig::load(&root().join("config/production.toml")).unwrap();
    if let Err(errors) = registry.validate(&shipped) {
        panic!("config/production.toml: {errors:?}");
    }
    if let Err(errors) = registry.validate(&tutorial_config()) {
        panic!("tutorial.toml: {errors:?}");
    }

    // Chapter 9 adds the shipped REST service to tutorial.toml and shows what
    // validate says; the tutorial must show exactly that.
    let mut text = std::fs::read_to_string(root().join("crates/tutorial/tutorial.toml")).unwrap();
    text.push_str("\n[[item]]\nname = \"RestService\"\nclass = \"svc-rest\"\n");
    let config = ProductionConfig::parse(&text, "tutorial.toml").unwrap();
    let errors = registry.validate(&config).err().unwrap_or_default();
    assert_eq!(errors.len(), 4, "{errors:?}");
    let markdown = read_tutorial();
    for e in errors {
        let line = format!("error: {e}");
        assert!(
            markdown.contains(&line),
            "{TUTORIAL} must show validate's error as it is:\n  {line}"
        );
    }
}

/// The tutorial's production, its folders moved into `dir`.
fn config_in(dir: &Path) -> ProductionConfig {
    let mut config = tutorial_config();
    config.production.data_dir = dir.join("data");
    for seed in &mut config.production.seed {
        seed.file = root().join(&seed.file);
        seed.into = dir.join("in");
    }
    let path = |p: &str| toml::Value::String(dir.join(p).display().to_string());
    for item in &mut config.items {
        let settings = &mut item.settings;
        match item.name.as_str() {
            "ServiceCSV" => {
                settings.insert("path".into(), path("in"));
                settings.insert("call_interval_ms".into(), toml::Value::Integer(50));
            }
            "FileOperation" | "PostgresOperation" => {
                settings.insert("path".into(), path("out"));
            }
            _ => {}
        }
    }
    config
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn the_tutorial_production_runs_the_sample_through_the_tutorials_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let registry = std::sync::Arc::new(tutorial::registry());
    let production = Production::start(config_in(dir.path()), registry, None)
        .await
        .unwrap();

    // The seeded sample (ids 3 to 6) flows: CSV service, router, file, embedded database.
    let formation = dir.path().join("out/formation.txt");
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines(&formation).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "rows missing: {:?}",
            lines(&formation)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rows = lines(&formation);
    rows.sort();
    assert_eq!(rows[0], "3 : salle3 : formation3");
    // when_flagged: the even ids, which the tutorial's IrisOperation flags.
    let mut flagged = lines(&dir.path().join("out/postgres.txt"));
    flagged.sort();
    assert_eq!(
        flagged,
        ["4 : salle4 : formation4", "6 : salle6 : formation6"]
    );

    // A test message, as `production test Router --type FormationRequest` sends it.
    let request = FormationRequest {
        formation: Formation {
            id: 8,
            nom: "Test".into(),
            salle: "T".into(),
        },
    };
    let reply = production
        .send("testing", "Router", AnyMessage::new(&request).unwrap())
        .await;
    let response: FormationResponse = reply.result.unwrap().decode().unwrap();
    assert_eq!(
        response.stored_in,
        ["FileOperation", "IrisOperation", "PostgresOperation"]
    );

    // Its trace: the test request, the router's three requests and every reply.
    production.store().flush().await.unwrap();
    let trace: Vec<String> = production
        .store()
        .trace(reply.session_id)
        .unwrap()
        .into_iter()
        .map(|m| format!("{} {} -> {} {}", m.kind, m.source, m.target, m.type_name))
        .collect();
    assert_eq!(
        trace,
        [
            "request testing -> Router FormationRequest",
            "request Router -> FileOperation FormationRequest",
            "reply FileOperation -> Router FormationStored",
            "request Router -> IrisOperation TrainingIrisRequest",
            "reply IrisOperation -> Router TrainingIrisResponse",
            "request Router -> PostgresOperation FormationRequest",
            "reply PostgresOperation -> Router FormationStored",
            "reply Router -> testing FormationResponse",
        ]
    );

    use tutorial::iris_operation::training;
    let ids: Vec<i64> = production
        .embedded_db()
        .read(|c| {
            training::table
                .select(training::id)
                .order(training::id)
                .load(c)
        })
        .await
        .unwrap();
    assert_eq!(ids, [3, 4, 5, 6, 8]);
    production.stop().await;
}
