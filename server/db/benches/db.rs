//! Typed layer vs raw rusqlite doing the same SQL on the same connection, A/B interleaved
//! (alternating which goes first) in one run, plus
//! `AsyncDatabase` concurrent point reads. Not a timed test: prints a table.
//!
//! Run: `cargo bench -p fluxon-db --bench db`; instruction counts of one workload:
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/db-* --case typed-get --iters 2000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use fluxon_db::testing::{models, Course, Teacher, User};
use fluxon_db::{AsyncDatabase, Database, Error, HashParams, Password};
use rusqlite::Connection;

const ROUNDS: usize = 11;
const BULK: usize = 20_000;
const SINGLE: usize = 2_000;
const READS: usize = 50_000;

const INSERT_SQL: &str =
    "INSERT INTO \"course\" (\"name\", \"code\", \"teacher\") VALUES (?1, ?2, ?3)";
const GET_SQL: &str =
    "SELECT \"id\", \"name\", \"code\", \"teacher\" FROM \"course\" WHERE \"id\" = ?1";

fn cheap() -> HashParams {
    HashParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

fn setup_typed(dir: &std::path::Path) -> (Database, i64) {
    let db = Database::open(dir.join("typed.db"))
        .expect("open")
        .with_hash_params(cheap());
    db.create_tables(&models()).expect("tables");
    let u = db
        .insert(&User {
            username: "t".into(),
            password: Password::new("x"),
            email: "e".into(),
            ..Default::default()
        })
        .expect("user");
    db.insert(&Teacher {
        user: u,
        name: "T".into(),
        department: "D".into(),
    })
    .expect("teacher");
    (db, u)
}

fn courses(n: usize, teacher: i64, round: usize) -> Vec<Course> {
    (0..n)
        .map(|i| Course {
            name: format!("course {round}-{i}"),
            code: format!("C{i:06}"),
            teacher,
            ..Default::default()
        })
        .collect()
}

fn raw_insert(conn: &Connection, c: &Course) -> rusqlite::Result<i64> {
    let mut st = conn.prepare_cached(INSERT_SQL)?;
    st.execute((&c.name, &c.code, c.teacher))?;
    Ok(conn.last_insert_rowid())
}

fn raw_get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Course>> {
    let mut st = conn.prepare_cached(GET_SQL)?;
    let mut rows = st.query([id])?;
    match rows.next()? {
        Some(r) => Ok(Some(Course {
            id: r.get(0)?,
            name: r.get(1)?,
            code: r.get(2)?,
            teacher: r.get(3)?,
        })),
        None => Ok(None),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ns_per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// Deterministic pseudo-random ids in 1..=max.
fn ids(n: usize, max: i64) -> Vec<i64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % max as u64) as i64 + 1
        })
        .collect()
}

/// `--case NAME --iters N`: runs one workload N times and exits, for counting instructions
/// under `valgrind --tool=callgrind` (deterministic on a noisy machine; see the notes).
fn single_case(args: &[String]) -> bool {
    let Some(i) = args.iter().position(|a| a == "--case") else {
        return false;
    };
    let case = args.get(i + 1).map(String::as_str).unwrap_or("");
    let n: usize = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|j| args.get(j + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (db, t) = setup_typed(tmp.path());
    let raw: &Connection = db.handle().connection();
    let prefill = courses(1000, t, 999);
    for c in &prefill {
        db.insert(c).expect("prefill");
    }
    let work = courses(n, t, 0);
    let keys = ids(n, 1000);
    let mut sink = 0usize;
    match case {
        "raw-bulk" => {
            let tx = raw.unchecked_transaction().expect("tx");
            for c in &work {
                raw_insert(&tx, c).expect("insert");
            }
            tx.commit().expect("commit");
        }
        "typed-bulk" => db
            .transaction(|tx| -> Result<(), Error> {
                for c in &work {
                    tx.insert(c)?;
                }
                Ok(())
            })
            .expect("tx"),
        "raw-single" => work.iter().for_each(|c| {
            raw_insert(raw, c).expect("insert");
        }),
        "typed-single" => work.iter().for_each(|c| {
            db.insert(c).expect("insert");
        }),
        "raw-get" => {
            for &k in &keys {
                sink += raw_get(raw, k).expect("get").map_or(0, |c| c.name.len());
            }
        }
        "typed-get" => {
            for &k in &keys {
                sink += db
                    .get::<Course>(k)
                    .expect("get")
                    .map_or(0, |c| c.name.len());
            }
        }
        other => panic!("unknown case {other}"),
    }
    println!("{case} x{n} done ({sink})");
    true
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if single_case(&args) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (db, tu) = setup_typed(tmp.path());
    // Raw rusqlite runs on the very same connection (same file, page cache and statement
    // cache), so the only difference measured is the typed layer itself.
    let raw: &Connection = db.handle().connection();
    let ru = tu;
    let mut results: Vec<(&str, usize, Vec<Duration>, Vec<Duration>)> = vec![
        ("insert, one transaction", BULK, vec![], vec![]),
        ("insert, one per transaction", SINGLE, vec![], vec![]),
        ("point select by id", READS, vec![], vec![]),
    ];
    for round in 0..ROUNDS {
        let raw_first = round % 2 == 0;
        // Insert in one transaction.
        let (a, b) = (courses(BULK, ru, round), courses(BULK, tu, round));
        let raw_bulk = || {
            let t = Instant::now();
            let tx = raw.unchecked_transaction().expect("tx");
            for c in &a {
                raw_insert(&tx, c).expect("insert");
            }
            tx.commit().expect("commit");
            t.elapsed()
        };
        let typed_bulk = || {
            let t = Instant::now();
            db.transaction(|tx| -> Result<(), Error> {
                for c in &b {
                    tx.insert(c)?;
                }
                Ok(())
            })
            .expect("tx");
            t.elapsed()
        };
        let (r, ty) = if raw_first {
            let r = raw_bulk();
            (r, typed_bulk())
        } else {
            let ty = typed_bulk();
            (raw_bulk(), ty)
        };
        results[0].2.push(r);
        results[0].3.push(ty);

        // One insert per transaction (autocommit).
        let (a, b) = (
            courses(SINGLE, ru, round + 100),
            courses(SINGLE, tu, round + 100),
        );
        let raw_single = || {
            let t = Instant::now();
            for c in &a {
                raw_insert(raw, c).expect("insert");
            }
            t.elapsed()
        };
        let typed_single = || {
            let t = Instant::now();
            for c in &b {
                db.insert(c).expect("insert");
            }
            t.elapsed()
        };
        let (r, ty) = if raw_first {
            let r = raw_single();
            (r, typed_single())
        } else {
            let ty = typed_single();
            (raw_single(), ty)
        };
        results[1].2.push(r);
        results[1].3.push(ty);

        // Point selects by id.
        let keys = ids(READS, (2 * (BULK + SINGLE) * (round + 1)) as i64);
        let raw_reads = || {
            let t = Instant::now();
            let mut n = 0usize;
            for &k in &keys {
                n += raw_get(raw, k).expect("get").map_or(0, |c| c.name.len());
            }
            assert!(n > 0);
            t.elapsed()
        };
        let typed_reads = || {
            let t = Instant::now();
            let mut n = 0usize;
            for &k in &keys {
                n += db
                    .get::<Course>(k)
                    .expect("get")
                    .map_or(0, |c| c.name.len());
            }
            assert!(n > 0);
            t.elapsed()
        };
        let (r, ty) = if raw_first {
            let r = raw_reads();
            (r, typed_reads())
        } else {
            let ty = typed_reads();
            (raw_reads(), ty)
        };
        results[2].2.push(r);
        results[2].3.push(ty);
    }

    println!("fluxon-db benchmark: {ROUNDS} interleaved rounds; best (min) and median round");
    println!(
        "| {:<28} | {:>9} | {:>10} | {:>10} | {:>9} | {:>9} | {:>9} |",
        "operation", "raw best", "typed best", "best ratio", "raw med", "typed med", "med ratio"
    );
    println!(
        "|{:-<30}|{:->11}|{:->12}|{:->12}|{:->11}|{:->11}|{:->11}|",
        "", "", "", "", "", "", ""
    );
    for (name, n, r, t) in results {
        let best = |v: &[Duration]| ns_per(v.iter().copied().min().unwrap_or_default(), n);
        let (rb, tb) = (best(&r), best(&t));
        let (rm, tm) = (ns_per(median(r), n), ns_per(median(t), n));
        println!(
            "| {name:<28} | {rb:>7.0}ns | {tb:>8.0}ns | {:>9.3}x | {rm:>7.0}ns | {tm:>7.0}ns | {:>8.3}x |",
            tb / rb,
            tm / rm
        );
    }
    drop(db);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async_reads(tmp.path().join("typed.db")));
}

async fn async_reads(path: std::path::PathBuf) {
    const TOTAL: usize = 40_000;
    println!();
    println!("AsyncDatabase concurrent point reads ({TOTAL} reads per run, pool of 8):");
    println!("| {:>5} | {:>12} | {:>10} |", "tasks", "reads/s", "µs/read");
    println!("|{:->7}|{:->14}|{:->12}|", "", "", "");
    let db = Arc::new(AsyncDatabase::open(&path, 8).await.expect("open"));
    let max = db.select::<Course>().count().await.expect("count");
    for tasks in [1usize, 2, 4, 8] {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let mut handles = Vec::new();
            for task in 0..tasks {
                let db = Arc::clone(&db);
                let keys: Vec<i64> = ids(TOTAL / tasks + task, max)
                    .into_iter()
                    .skip(task)
                    .collect();
                handles.push(tokio::spawn(async move {
                    for k in keys {
                        db.get::<Course>(k).await.expect("get").expect("row");
                    }
                }));
            }
            for h in handles {
                h.await.expect("join");
            }
            best = best.min(t.elapsed());
        }
        println!(
            "| {tasks:>5} | {:>12.0} | {:>10.1} |",
            TOTAL as f64 / best.as_secs_f64(),
            best.as_secs_f64() * 1e6 / TOTAL as f64
        );
    }
}
