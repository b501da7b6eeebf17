//! Benchmarks of interop-rs, each against a bare baseline measured in the same run.
//! Run through `scripts/bench` (release build); figures go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use futures_util::stream::{FuturesUnordered, StreamExt};
use interop::prelude::*;
use interop::{Production, ProductionConfig};

// The same allocator as the production binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

diesel::table! {
    training (id) {
        id -> BigInt,
        name -> Text,
        room -> Text,
    }
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sync request/reply round trips through the production, store on and off, and the
    /// same rows written straight to SQLite.
    Runtime {
        /// Request/reply pairs per measurement.
        #[arg(long, default_value_t = 200_000)]
        pairs: usize,
        /// Sessions in flight at once.
        #[arg(long, default_value_t = 512)]
        in_flight: usize,
    },
    /// Write a formation CSV of `rows` rows (ids from 1).
    GenCsv {
        #[arg(long)]
        rows: usize,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Ingest a CSV through the formation production (svc-csv -> router -> op-file +
    /// op-iris [+ op-postgres]) with the full trace; prints rows/s and peak RSS.
    Ingest {
        #[arg(long)]
        csv: std::path::PathBuf,
        /// PostgreSQL URL; without it the PostgreSQL operation is disabled.
        #[arg(long)]
        postgres: Option<String>,
        /// svc-csv's `max_in_flight`; its default without.
        #[arg(long)]
        in_flight: Option<usize>,
    },
    /// Serve `POST /training/` on `addr`: the production (`--production`) or a bare
    /// actix-web handler writing the row straight to SQLite. Runs until Ctrl-C.
    RestServer {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        production: bool,
    },
    /// The bare loop: the same file lines and SQLite upserts with no framework.
    IngestBaseline {
        #[arg(long)]
        csv: std::path::PathBuf,
        /// Commit every row instead of once for the whole file.
        #[arg(long)]
        commit_per_row: bool,
    },
}

/// A bare actix-web handler writing the posted row straight to SQLite (the REST
/// baseline), or the formation production serving `POST /training/` (full trace).
async fn rest_server(addr: &str, production: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    if production {
        let text = format!(
            r#"[production]
name = "bench-rest"
data_dir = "{root}/data"
http = "{addr}"
[[item]]
name = "RestService"
class = "svc-rest"
[[item]]
name = "Router"
class = "proc-router"
[item.settings]
postgres_rule = "never"
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
enabled = false
"#,
            root = dir.path().display()
        );
        let config = ProductionConfig::parse(&text, "bench")?;
        let p = Production::start(config, Arc::new(production::registry()), None).await?;
        let server = production::server::serve(p.clone())?;
        println!("listening on {}", server.addr);
        tokio::signal::ctrl_c().await?;
        server.stop().await;
        p.stop().await;
        return Ok(());
    }
    use actix_web::{web, App, HttpResponse, HttpServer};
    use diesel::r2d2::{ConnectionManager, Pool};
    #[derive(Deserialize)]
    struct Body {
        id: i64,
        nom: String,
        salle: String,
    }
    let path = dir.path().join("production.db");
    {
        let mut c = SqliteConnection::establish(&path.to_string_lossy())?;
        c.batch_execute("PRAGMA journal_mode = WAL;")?;
        c.run_pending_migrations(interop::store::MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    #[derive(Debug)]
    struct Pragmas;
    impl diesel::r2d2::CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
        fn on_acquire(&self, c: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
            c.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                .map_err(diesel::r2d2::Error::QueryError)
        }
    }
    let pool = Pool::builder()
        .max_size(4)
        .connection_customizer(Box::new(Pragmas))
        .build(ConnectionManager::<SqliteConnection>::new(
            path.to_string_lossy(),
        ))?;
    let pool = web::Data::new(pool);
    let server = HttpServer::new(move || {
        App::new().app_data(pool.clone()).route(
            "/training/",
            web::post().to(
                |pool: web::Data<Pool<ConnectionManager<SqliteConnection>>>,
                 body: web::Json<Body>| async move {
                    let b = body.into_inner();
                    let id = b.id;
                    let r = web::block(move || -> anyhow::Result<()> {
                        let mut c = pool.get()?;
                        // The same cached statement op-iris uses.
                        diesel::replace_into(training::table)
                            .values((
                                training::id.eq(b.id),
                                training::name.eq(&b.nom),
                                training::room.eq(&b.salle),
                            ))
                            .execute(&mut c)?;
                        Ok(())
                    })
                    .await;
                    match r {
                        Ok(Ok(())) => HttpResponse::Created().json(serde_json::json!({ "id": id })),
                        _ => HttpResponse::InternalServerError().finish(),
                    }
                },
            ),
        )
    })
    .workers(2)
    .bind(addr)?;
    println!("listening on {:?}", server.addrs());
    server.run().await?;
    Ok(())
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) spent so far by this process's threads, summed by thread
/// name: where an ingest's time goes, steadier than its wall-clock time.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    // Clock ticks per second: 100 on Linux.
    let ticks = 100.0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (name) state ppid ...": fields after the name, utime and stime are 12 and 13.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let cpu = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *by_name.entry(name).or_insert(0.0) += (cpu(11) + cpu(12)) / ticks;
    }
    by_name
}

/// Per-row CPU of the busiest threads between two [`cpu_by_thread`] readings.
fn cpu_per_row(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    rows: usize,
) -> String {
    let mut spent: Vec<(f64, &str)> = after
        .iter()
        .map(|(name, t)| (t - before.get(name).copied().unwrap_or(0.0), name.as_str()))
        .filter(|(t, _)| *t > 0.0)
        .collect();
    spent.sort_by(|a, b| b.0.total_cmp(&a.0));
    spent
        .iter()
        .take(3)
        .map(|(t, name)| format!("{name} {:.1} µs", t * 1e6 / rows as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

fn gen_csv(rows: usize, out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    writeln!(w, "id;nom;salle")?;
    for i in 1..=rows {
        writeln!(
            w,
            "{i};Formation {} niveau {};Salle {}",
            i % 97,
            i % 5,
            i % 7
        )?;
    }
    w.flush()?;
    Ok(())
}

async fn ingest(
    csv: &std::path::Path,
    postgres: Option<&str>,
    in_flight: Option<usize>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().display().to_string();
    let rows =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(csv)?)).count() - 1;
    let (enabled, url, rule) = match postgres {
        Some(u) => ("true", u.to_string(), "always"),
        None => (
            "false",
            "postgres://nobody@127.0.0.1:1/none".to_string(),
            "never",
        ),
    };
    let in_flight = in_flight
        .map(|n| format!("max_in_flight = {n}"))
        .unwrap_or_default();
    let text = format!(
        r#"[production]
name = "bench"
data_dir = "{root}/data"
[[item]]
name = "ServiceCSV"
class = "svc-csv"
[item.settings]
path = "{root}/in"
call_interval_ms = 20
{in_flight}
[[item]]
name = "Router"
class = "proc-router"
[item.settings]
postgres_rule = "{rule}"
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
"#
    );
    let config = ProductionConfig::parse(&text, "bench")?;
    let p = Production::start(config, Arc::new(production::registry()), None).await?;
    std::fs::create_dir_all(dir.path().join("in"))?;
    let staged = dir.path().join("staged.part");
    std::fs::copy(csv, &staged)?;
    let cpu_before = cpu_by_thread();
    let started = Instant::now();
    std::fs::rename(&staged, dir.path().join("in/bench.csv"))?;
    let archived = dir.path().join("in/archive/bench.csv");
    while !archived.exists() {
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    p.store().flush().await?;
    let cpu = cpu_per_row(&cpu_before, &cpu_by_thread(), rows);
    let lines = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(
        dir.path().join("out/formation.txt"),
    )?))
    .count();
    let messages = p.store().next_id() - 1;
    p.stop().await;
    anyhow::ensure!(
        lines == rows,
        "expected {rows} lines in the file, found {lines}"
    );
    println!(
        "ingest: {rows} rows in {elapsed:.2} s = {:.0} rows/s, {messages} messages stored, peak RSS {:.1} MiB{}",
        rows as f64 / elapsed,
        peak_rss_mib(),
        if postgres.is_some() { ", with PostgreSQL" } else { "" }
    );
    println!("  CPU per row: {cpu}");
    Ok(())
}

fn ingest_baseline(csv: &std::path::Path, commit_per_row: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let mut c = SqliteConnection::establish(&dir.path().join("production.db").to_string_lossy())?;
    c.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    c.run_pending_migrations(interop::store::MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.path().join("formation.txt"))?);
    let started = Instant::now();
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_path(csv)?;
    let mut rows = 0usize;
    // The same upsert op-iris does, through diesel's cached prepared statement.
    let upsert =
        |c: &mut SqliteConnection, id: i64, nom: &str, salle: &str| -> QueryResult<usize> {
            diesel::replace_into(training::table)
                .values((
                    training::id.eq(id),
                    training::name.eq(nom),
                    training::room.eq(salle),
                ))
                .execute(c)
        };
    if !commit_per_row {
        c.batch_execute("BEGIN IMMEDIATE")?;
    }
    for record in reader.records() {
        let r = record?;
        let (id, nom, salle) = (r[0].parse::<i64>()?, &r[1], &r[2]);
        writeln!(out, "{id} : {salle} : {nom}")?;
        upsert(&mut c, id, nom, salle)?;
        rows += 1;
    }
    if !commit_per_row {
        c.batch_execute("COMMIT")?;
    }
    out.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "baseline ({}): {rows} rows in {elapsed:.2} s = {:.0} rows/s, peak RSS {:.1} MiB",
        if commit_per_row {
            "commit per row"
        } else {
            "one transaction"
        },
        rows as f64 / elapsed,
        peak_rss_mib()
    );
    Ok(())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Ping {
    n: i64,
    text: String,
}
impl Message for Ping {
    const TYPE_NAME: &'static str = "Ping";
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pong {
    n: i64,
}
impl Message for Pong {
    const TYPE_NAME: &'static str = "Pong";
}

request_set! {
    enum EchoRequest { Ping(Ping) }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

/// The smallest operation: replies at once.
struct Echo;

impl BusinessOperation for Echo {
    const CLASS: &'static str = "bench-echo";
    type Settings = NoSettings;
    type Request = EchoRequest;
    fn new(_: NoSettings, _: &HostContext) -> HostResult<Self> {
        Ok(Echo)
    }
    async fn on_message(&mut self, _: &MessageContext, r: EchoRequest) -> HostResult<AnyMessage> {
        let EchoRequest::Ping(p) = r;
        AnyMessage::new(&Pong { n: p.n })
    }
}

fn ping(n: i64) -> Ping {
    Ping {
        n,
        text: "Introduction à IRIS, salle A".into(),
    }
}

async fn runtime_round_trips(persist: bool, pairs: usize, in_flight: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let text = format!(
        "[production]\nname = \"bench\"\ndata_dir = \"{}\"\npersist_messages = {persist}\n\n\
         [[item]]\nname = \"Echo\"\nclass = \"bench-echo\"\n",
        dir.path().display()
    );
    let config = ProductionConfig::parse(&text, "bench")?;
    let mut registry = Registry::new();
    registry.message::<Pong>().operation::<Echo>();
    let p = Production::start(config, Arc::new(registry), None).await?;
    let message = AnyMessage::new(&ping(1))?;
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut sent = 0;
    let mut done = 0;
    while done < pairs {
        while sent < pairs && pending.len() < in_flight {
            let p = p.clone();
            let m = message.clone();
            pending.push(async move { p.send("Bench", "Echo", m).await });
            sent += 1;
        }
        if let Some(r) = pending.next().await {
            r.result?;
            done += 1;
        }
    }
    let rate = pairs as f64 / started.elapsed().as_secs_f64();
    p.stop().await;
    Ok(rate)
}

/// The bare baseline: the same header + body rows (request, reply, request status)
/// written with diesel to the same schema (names interned, times in microseconds, as the
/// store keeps them), committing every `batch` pairs.
fn baseline_rows(pairs: usize, batch: usize) -> anyhow::Result<f64> {
    use interop::store::schema_for_bench::{message_data as m, message_name};
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("production.db");
    let mut c = SqliteConnection::establish(&path.to_string_lossy())?;
    c.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    c.run_pending_migrations(interop::store::MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (id, name) in [(1i64, "Bench"), (2, "Echo"), (3, "Ping"), (4, "Pong")] {
        diesel::insert_into(message_name::table)
            .values((message_name::id.eq(id), message_name::name.eq(name)))
            .execute(&mut c)?;
    }
    let body = serde_json::to_string(&ping(1))?;
    let reply = serde_json::to_string(&Pong { n: 1 })?;
    let started = Instant::now();
    let mut id = 0i64;
    let mut done = 0;
    while done < pairs {
        let n = batch.min(pairs - done);
        c.immediate_transaction(|c| -> QueryResult<()> {
            for _ in 0..n {
                id += 2;
                let now = chrono_micros();
                let row = |id: i64, kind: i64, status: i64, type_name: i64, body: &str| {
                    (
                        m::id.eq(id),
                        m::session_id.eq(id),
                        m::source.eq(1),
                        m::target.eq(2),
                        m::type_name.eq(type_name),
                        m::kind.eq(kind),
                        m::status.eq(status),
                        m::is_error.eq(false),
                        m::created.eq(now),
                        m::body.eq(body.to_string()),
                    )
                };
                diesel::insert_into(m::table)
                    .values(row(id - 1, 0, 0, 3, &body))
                    .execute(c)?;
                diesel::insert_into(m::table)
                    .values(row(id, 1, 2, 4, &reply))
                    .execute(c)?;
                diesel::update(m::table.find(id - 1))
                    .set((m::status.eq(2), m::processed.eq(now)))
                    .execute(c)?;
            }
            Ok(())
        })?;
        done += n;
    }
    Ok(pairs as f64 / started.elapsed().as_secs_f64())
}

/// Now, in microseconds since the epoch.
fn chrono_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Runtime { pairs, in_flight } => {
            let system = actix::System::new();
            let (on, off) = system.block_on(async {
                // Warm up once so the first measurement does not pay for page faults.
                runtime_round_trips(true, pairs / 10, in_flight).await?;
                let on = runtime_round_trips(true, pairs, in_flight).await?;
                let off = runtime_round_trips(false, pairs, in_flight).await?;
                anyhow::Ok((on, off))
            })?;
            let bare = baseline_rows(pairs, 512)?;
            let bare_each = baseline_rows(pairs / 20, 1)?;
            println!("runtime: {pairs} sync request/reply pairs, {in_flight} sessions in flight");
            println!("  production, message store on   {on:>10.0} pairs/s");
            println!("  production, message store off  {off:>10.0} pairs/s");
            println!("  bare SQLite rows, 512 pairs/commit {bare:>10.0} pairs/s");
            println!("  bare SQLite rows, 1 pair/commit    {bare_each:>10.0} pairs/s");
            println!(
                "  ratio bare(batched)/production(store on) = {:.2}x; store on/off = {:.2}",
                bare / on,
                on / off
            );
        }
        Command::GenCsv { rows, out } => gen_csv(rows, &out)?,
        Command::RestServer { addr, production } => {
            let system = actix::System::new();
            system.block_on(rest_server(&addr, production))?;
        }
        Command::Ingest {
            csv,
            postgres,
            in_flight,
        } => {
            let system = actix::System::new();
            system.block_on(ingest(&csv, postgres.as_deref(), in_flight))?;
        }
        Command::IngestBaseline {
            csv,
            commit_per_row,
        } => ingest_baseline(&csv, commit_per_row)?,
    }
    Ok(())
}
