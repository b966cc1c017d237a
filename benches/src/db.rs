//! The database layer: `fluxon-db`'s typed layer against raw rusqlite on the same connection
//! (same file, page cache and statement cache, raw also using `prepare_cached`), interleaved
//! A B A B alternating which goes first; and `AsyncDatabase` point reads with 1, 2, 4 and 8
//! concurrent tasks, each round running every task count.
//!
//! For instruction counts (deterministic on a noisy machine), one workload runs alone:
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/fluxon-bench db
//! --case typed-get --iters 3000` (and `--iters 1000`: the difference removes setup).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure};
use fluxon_db::testing::{models, Course, Student, Teacher, User};
use fluxon_db::{AsyncDatabase, Database, Error, HashParams, Password};
use rusqlite::Connection;

use crate::report::{Comparison, Metric};
use crate::rng::xorshift;
use crate::stats::Summary;

pub const NOTES: &str = "\
db: the university models of `fluxon_db::testing` in one SQLite file (WAL, synchronous=NORMAL); \
the typed layer and raw rusqlite run on the same connection, interleaved, alternating which goes \
first. Inserts: `course` rows (foreign key to `teacher`); point selects: `course` by id; join: the \
courses of a student through `enrollment` (typed: `Database::linked`; raw: a hand-written JOIN of \
the same plan, ordered by the enrollment's course column so SQLite reads its index in order and \
needs no sort). Async point reads: `AsyncDatabase::get` (pool of 8 connections) from N \
concurrent tasks, the ratio is against 1 task in the same rounds.";

const INSERT_SQL: &str =
    "INSERT INTO \"course\" (\"name\", \"code\", \"teacher\") VALUES (?1, ?2, ?3)";
const GET_SQL: &str =
    "SELECT \"id\", \"name\", \"code\", \"teacher\" FROM \"course\" WHERE \"id\" = ?1";
const JOIN_SQL: &str = "SELECT c.\"id\", c.\"name\", c.\"code\", c.\"teacher\" \
     FROM \"enrollment\" e JOIN \"course\" c ON c.\"id\" = e.\"course\" \
     WHERE e.\"student\" = ?1 ORDER BY e.\"course\"";

/// Courses created before the rounds (the join's targets).
const PREFILL_COURSES: usize = 1000;
const STUDENTS: usize = 200;
const COURSES_PER_STUDENT: usize = 10;
/// Connections of the `AsyncDatabase` pool.
const POOL: usize = 8;

/// What to measure (counts are per round).
#[derive(Clone, Debug)]
pub struct Plan {
    pub rounds: usize,
    /// Inserts in one transaction.
    pub bulk: usize,
    /// Inserts, one transaction each.
    pub single: usize,
    /// Point selects by id.
    pub reads: usize,
    /// Join queries (each returns one student's courses).
    pub joins: usize,
    /// `AsyncDatabase` point reads per run, split among the tasks.
    pub async_reads: usize,
    pub task_counts: Vec<usize>,
}

impl Plan {
    pub fn full(rounds: usize) -> Self {
        Self {
            rounds,
            bulk: 20_000,
            single: 2_000,
            reads: 50_000,
            joins: 10_000,
            async_reads: 40_000,
            task_counts: vec![1, 2, 4, 8],
        }
    }

    /// Every count divided by `factor` (at least 1): for smoke runs.
    pub fn scaled_down(mut self, factor: usize) -> Self {
        for n in [
            &mut self.bulk,
            &mut self.single,
            &mut self.reads,
            &mut self.joins,
            &mut self.async_reads,
        ] {
            *n = (*n / factor).max(1);
        }
        self
    }
}

fn cheap() -> HashParams {
    HashParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

fn user(db: &Database, name: &str) -> Result<i64, Error> {
    db.insert(&User {
        username: name.into(),
        password: Password::new("x"),
        email: "e".into(),
        ..Default::default()
    })
}

/// The typed database with a teacher, `PREFILL_COURSES` courses and `STUDENTS` students each
/// enrolled in `COURSES_PER_STUDENT` of them. Returns the teacher's id.
fn setup(path: &Path) -> anyhow::Result<(Database, i64)> {
    let db = Database::open(path)?.with_hash_params(cheap());
    db.create_tables(&models())?;
    let teacher = user(&db, "teacher")?;
    db.insert(&Teacher {
        user: teacher,
        name: "T".into(),
        department: "D".into(),
    })?;
    let prefill = courses(PREFILL_COURSES, teacher, usize::MAX);
    db.transaction(|tx| -> Result<(), Error> {
        for c in &prefill {
            tx.insert(c)?;
        }
        Ok(())
    })?;
    let picks = ids(STUDENTS * COURSES_PER_STUDENT, PREFILL_COURSES as i64);
    for s in 0..STUDENTS {
        let id = user(&db, &format!("student{s}"))?;
        db.insert(&Student {
            user: id,
            name: format!("S{s}"),
            ..Default::default()
        })?;
        let mut mine: Vec<i64> =
            picks[s * COURSES_PER_STUDENT..(s + 1) * COURSES_PER_STUDENT].to_vec();
        mine.sort_unstable();
        mine.dedup();
        for course in mine {
            db.link(Student::COURSES, id, course)?;
        }
    }
    Ok((db, teacher))
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

/// Deterministic pseudo-random ids in 1..=max.
fn ids(n: usize, max: i64) -> Vec<i64> {
    xorshift()
        .take(n)
        .map(|x| (x % max as u64) as i64 + 1)
        .collect()
}

fn raw_insert(conn: &Connection, c: &Course) -> rusqlite::Result<i64> {
    let mut st = conn.prepare_cached(INSERT_SQL)?;
    st.execute((&c.name, &c.code, c.teacher))?;
    Ok(conn.last_insert_rowid())
}

fn raw_course(r: &rusqlite::Row<'_>) -> rusqlite::Result<Course> {
    Ok(Course {
        id: r.get(0)?,
        name: r.get(1)?,
        code: r.get(2)?,
        teacher: r.get(3)?,
    })
}

fn raw_get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Course>> {
    let mut st = conn.prepare_cached(GET_SQL)?;
    let mut rows = st.query([id])?;
    rows.next()?.map(raw_course).transpose()
}

fn raw_join(conn: &Connection, student: i64) -> rusqlite::Result<Vec<Course>> {
    let mut st = conn.prepare_cached(JOIN_SQL)?;
    let rows = st.query_map([student], raw_course)?;
    rows.collect()
}

/// The workloads, each with a raw and a typed version doing the same work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Bulk,
    Single,
    Get,
    Join,
}

const WORKLOADS: [Workload; 4] = [
    Workload::Bulk,
    Workload::Single,
    Workload::Get,
    Workload::Join,
];

impl Workload {
    fn bench(self) -> &'static str {
        match self {
            Self::Bulk => "db/insert-one-transaction",
            Self::Single => "db/insert-one-per-transaction",
            Self::Get => "db/point-select",
            Self::Join => "db/join-through-fk",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Bulk | Self::Single => "rows/s",
            Self::Get | Self::Join => "queries/s",
        }
    }

    fn case_name(self) -> &'static str {
        match self {
            Self::Bulk => "bulk",
            Self::Single => "single",
            Self::Get => "get",
            Self::Join => "join",
        }
    }

    fn count(self, plan: &Plan) -> usize {
        match self {
            Self::Bulk => plan.bulk,
            Self::Single => plan.single,
            Self::Get => plan.reads,
            Self::Join => plan.joins,
        }
    }
}

/// The inputs of one workload run.
struct Work {
    courses: Vec<Course>,
    /// Course ids (point selects) or student ids (joins).
    keys: Vec<i64>,
}

impl Work {
    fn new(w: Workload, n: usize, teacher: i64, tag: usize, max_course: i64) -> Self {
        match w {
            Workload::Bulk | Workload::Single => Self {
                courses: courses(n, teacher, tag),
                keys: Vec::new(),
            },
            Workload::Get => Self {
                courses: Vec::new(),
                keys: ids(n, max_course),
            },
            // Students are users 2..=STUDENTS+1 (the teacher is user 1).
            Workload::Join => Self {
                courses: Vec::new(),
                keys: ids(n, STUDENTS as i64).into_iter().map(|k| k + 1).collect(),
            },
        }
    }
}

/// Runs one workload, raw or typed; returns a count of what it read (to check both read alike).
fn perform(db: &Database, w: Workload, typed: bool, work: &Work) -> anyhow::Result<usize> {
    let raw: &Connection = db
        .handle()
        .connection()
        .ok_or_else(|| anyhow::anyhow!("the db benchmark runs on SQLite"))?;
    let mut seen = 0usize;
    match (w, typed) {
        (Workload::Bulk, false) => {
            let tx = raw.unchecked_transaction()?;
            for c in &work.courses {
                raw_insert(&tx, c)?;
            }
            tx.commit()?;
        }
        (Workload::Bulk, true) => db.transaction(|tx| -> Result<(), Error> {
            for c in &work.courses {
                tx.insert(c)?;
            }
            Ok(())
        })?,
        (Workload::Single, false) => {
            for c in &work.courses {
                raw_insert(raw, c)?;
            }
        }
        (Workload::Single, true) => {
            for c in &work.courses {
                db.insert(c)?;
            }
        }
        (Workload::Get, false) => {
            for &k in &work.keys {
                seen += raw_get(raw, k)?.map_or(0, |c| c.name.len());
            }
        }
        (Workload::Get, true) => {
            for &k in &work.keys {
                seen += db.get::<Course>(k)?.map_or(0, |c| c.name.len());
            }
        }
        (Workload::Join, false) => {
            for &k in &work.keys {
                seen += raw_join(raw, k)?.len();
            }
        }
        (Workload::Join, true) => {
            for &k in &work.keys {
                seen += db.linked(Student::COURSES, k)?.len();
            }
        }
    }
    Ok(seen)
}

/// Per workload: (raw, typed) operations per second, one value per round.
type Rates = Vec<(Vec<f64>, Vec<f64>)>;

fn sync_rounds(db: &Database, teacher: i64, plan: &Plan) -> anyhow::Result<Rates> {
    let mut rates: Rates = vec![(Vec::new(), Vec::new()); WORKLOADS.len()];
    let mut inserted = PREFILL_COURSES;
    for round in 0..plan.rounds {
        let raw_first = round % 2 == 0;
        for (slot, &w) in WORKLOADS.iter().enumerate() {
            let n = w.count(plan);
            let mut seen = [0usize; 2];
            for typed in [!raw_first, raw_first] {
                let tag = round * 4 + usize::from(typed) * 2 + slot;
                let work = Work::new(w, n, teacher, tag, inserted as i64);
                let start = Instant::now();
                seen[usize::from(typed)] = perform(db, w, typed, &work)?;
                let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
                let (raw_rates, typed_rates) = &mut rates[slot];
                if typed {
                    typed_rates.push(rate);
                } else {
                    raw_rates.push(rate);
                }
                if matches!(w, Workload::Bulk | Workload::Single) {
                    inserted += n;
                }
            }
            ensure!(
                seen[0] == seen[1],
                "{}: raw read {} and typed read {}",
                w.bench(),
                seen[0],
                seen[1]
            );
            if matches!(w, Workload::Get | Workload::Join) {
                ensure!(seen[0] > 0, "{}: read nothing", w.bench());
            }
        }
    }
    Ok(rates)
}

/// Reads per second of `tasks` concurrent tasks sharing `total` point reads.
async fn async_run(
    db: &Arc<AsyncDatabase>,
    tasks: usize,
    total: usize,
    max: i64,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let per_task = total.div_ceil(tasks);
    for task in 0..tasks {
        let db = Arc::clone(db);
        let keys: Vec<i64> = ids(per_task + task, max).into_iter().skip(task).collect();
        set.spawn(async move {
            for k in keys {
                ensure!(db.get::<Course>(k).await?.is_some(), "course {k} missing");
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
    }
    Ok((per_task * tasks) as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

pub async fn run(plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    ensure!(plan.rounds > 0, "no rounds");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let sync_plan = plan.clone();
    let sync_path = path.clone();
    let rates = tokio::task::spawn_blocking(move || -> anyhow::Result<Rates> {
        let (db, teacher) = setup(&sync_path)?;
        sync_rounds(&db, teacher, &sync_plan)
    })
    .await??;
    let mut out: Vec<Comparison> = WORKLOADS
        .iter()
        .zip(rates)
        .map(|(w, (raw, typed))| Comparison {
            bench: w.bench().to_owned(),
            peer: "raw rusqlite".to_owned(),
            metrics: vec![Metric::higher_is_better(
                w.unit(),
                Summary::of(&typed),
                Summary::of(&raw),
            )],
        })
        .collect();

    let db = Arc::new(AsyncDatabase::open(&path, POOL).await?);
    let max = db.select::<Course>().count().await?;
    let counts = &plan.task_counts;
    async_run(&db, 1, plan.async_reads / 4 + 1, max).await?; // warm-up
    let mut rates = vec![Vec::new(); counts.len()];
    for round in 0..plan.rounds {
        for k in 0..counts.len() {
            let i = (round + k) % counts.len();
            rates[i].push(async_run(&db, counts[i], plan.async_reads, max).await?);
        }
    }
    if let Some(one) = counts.iter().position(|&n| n == 1) {
        for (i, &tasks) in counts.iter().enumerate() {
            if i != one {
                out.push(Comparison {
                    bench: format!("db/async-point-reads/{tasks}-tasks"),
                    peer: "AsyncDatabase, 1 task".to_owned(),
                    metrics: vec![Metric::higher_is_better(
                        "reads/s",
                        Summary::of(&rates[i]),
                        Summary::of(&rates[one]),
                    )],
                });
            }
        }
    }
    Ok(out)
}

/// `db --case NAME --iters N`: runs one workload (`raw-` or `typed-` followed by `bulk`,
/// `single`, `get` or `join`) `iters` times and nothing else, for counting instructions.
pub fn single_case(case: &str, iters: usize) -> anyhow::Result<()> {
    let (kind, name) = case
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("unknown case {case}"))?;
    let typed = match kind {
        "raw" => false,
        "typed" => true,
        _ => bail!("unknown case {case}: raw-… or typed-…"),
    };
    let Some(&w) = WORKLOADS.iter().find(|w| w.case_name() == name) else {
        bail!("unknown case {case}: …-bulk, …-single, …-get or …-join");
    };
    let dir = tempfile::tempdir()?;
    let (db, teacher) = setup(&dir.path().join("bench.db"))?;
    let work = Work::new(w, iters, teacher, 0, PREFILL_COURSES as i64);
    let seen = perform(&db, w, typed, &work)?;
    println!("{case} x{iters} done ({seen})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Every workload, typed and raw (which must read the same rows), and the async scaling,
    /// with tiny counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn db_smoke_run() {
        let plan = super::Plan::full(2).scaled_down(500);
        let rows = tokio::time::timeout(Duration::from_secs(120), super::run(&plan))
            .await
            .expect("the smoke run took too long")
            .unwrap();
        let benches: Vec<&str> = rows.iter().map(|c| c.bench.as_str()).collect();
        assert_eq!(
            benches,
            [
                "db/insert-one-transaction",
                "db/insert-one-per-transaction",
                "db/point-select",
                "db/join-through-fk",
                "db/async-point-reads/2-tasks",
                "db/async-point-reads/4-tasks",
                "db/async-point-reads/8-tasks",
            ]
        );
        for c in &rows {
            let m = &c.metrics[0];
            assert!(m.fluxon.median > 0.0 && m.peer.median > 0.0, "{c:?}");
        }
        let json = crate::report::json_lines(&rows);
        assert!(json.contains(
            "{\"bench\":\"db/join-through-fk\",\"peer\":\"raw rusqlite\",\"unit\":\"queries/s\""
        ));
        assert!(json.contains(
            "{\"bench\":\"db/async-point-reads/8-tasks\",\"peer\":\"AsyncDatabase, 1 task\",\"unit\":\"reads/s\""
        ));
    }

    #[test]
    fn single_cases_run_alone() {
        super::single_case("typed-join", 5).unwrap();
        super::single_case("raw-bulk", 5).unwrap();
        assert!(super::single_case("typed-nothing", 5).is_err());
        assert!(super::single_case("fast-get", 5).is_err());
    }
}
