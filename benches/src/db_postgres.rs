//! The database layer on PostgreSQL: `AsyncDatabase` (what a server's handlers call) against
//! raw tokio-postgres on one connection with prepared statements, interleaved A B A B and
//! alternating which goes first, in a fresh database on the server `--url` names.

use std::time::Instant;

use anyhow::ensure;
use fluxon_db::testing::{models, Course, Student, Teacher, User};
use fluxon_db::{AsyncDatabase, Error, HashParams, Password};
use tokio_postgres::{Client, NoTls, Statement};

use crate::report::{Comparison, Metric};
use crate::rng::xorshift;
use crate::stats::Summary;

pub const NOTES: &str = "\
db-postgres: the university models of `fluxon_db::testing` in a fresh PostgreSQL database. \
Typed: `AsyncDatabase` (pool of 4) as a handler calls it, each operation taking a pooled \
connection and running on a blocking thread; raw: one tokio-postgres connection with its \
statements prepared once, awaited directly. Inserts: `course` rows one per statement \
(autocommit, RETURNING the key); point selects: `course` by id; join: a student's courses \
through `enrollment` (typed: `AsyncDatabase::linked`; raw: a hand-written JOIN). Sequential, one \
operation in flight.";

const INSERT_SQL: &str =
    "INSERT INTO \"course\" (\"name\", \"code\", \"teacher\") VALUES ($1, $2, $3) RETURNING \"id\"";
const GET_SQL: &str =
    "SELECT \"id\", \"name\", \"code\", \"teacher\" FROM \"course\" WHERE \"id\" = $1";
const JOIN_SQL: &str = "SELECT c.\"id\", c.\"name\", c.\"code\", c.\"teacher\" \
     FROM \"enrollment\" e JOIN \"course\" c ON c.\"id\" = e.\"course\" \
     WHERE e.\"student\" = $1 ORDER BY e.\"course\"";

const PREFILL_COURSES: usize = 1000;
const STUDENTS: usize = 200;
const COURSES_PER_STUDENT: usize = 10;
const POOL: usize = 4;

/// What to measure (counts are per round and side).
#[derive(Clone, Debug)]
pub struct Plan {
    pub rounds: usize,
    pub inserts: usize,
    pub reads: usize,
    pub joins: usize,
}

impl Plan {
    pub fn full(rounds: usize) -> Self {
        Self {
            rounds,
            inserts: 2_000,
            reads: 5_000,
            joins: 3_000,
        }
    }

    /// Every count divided by `factor` (at least 1): for smoke runs.
    pub fn scaled_down(mut self, factor: usize) -> Self {
        for n in [&mut self.inserts, &mut self.reads, &mut self.joins] {
            *n = (*n / factor).max(1);
        }
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Insert,
    Get,
    Join,
}

const WORKLOADS: [Workload; 3] = [Workload::Insert, Workload::Get, Workload::Join];

impl Workload {
    fn bench(self) -> &'static str {
        match self {
            Self::Insert => "db-postgres/insert",
            Self::Get => "db-postgres/point-select",
            Self::Join => "db-postgres/join-through-fk",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Insert => "inserts/s",
            Self::Get => "selects/s",
            Self::Join => "queries/s",
        }
    }

    fn count(self, plan: &Plan) -> usize {
        match self {
            Self::Insert => plan.inserts,
            Self::Get => plan.reads,
            Self::Join => plan.joins,
        }
    }
}

struct Raw {
    client: Client,
    insert: Statement,
    get: Statement,
    join: Statement,
}

impl Raw {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(conn);
        let insert = client.prepare(INSERT_SQL).await?;
        let get = client.prepare(GET_SQL).await?;
        let join = client.prepare(JOIN_SQL).await?;
        Ok(Self {
            client,
            insert,
            get,
            join,
        })
    }
}

fn course(r: &tokio_postgres::Row) -> Course {
    Course {
        id: r.get(0),
        name: r.get(1),
        code: r.get(2),
        teacher: r.get(3),
    }
}

/// Deterministic pseudo-random ids in 1..=max.
fn ids(n: usize, max: i64) -> Vec<i64> {
    xorshift()
        .take(n)
        .map(|x| (x % max as u64) as i64 + 1)
        .collect()
}

fn new_course(i: usize, tag: usize, teacher: i64) -> Course {
    Course {
        name: format!("course {tag}-{i}"),
        code: format!("C{tag}-{i}"),
        teacher,
        ..Default::default()
    }
}

/// The tables, a teacher, the courses and the students with their enrollments.
async fn setup(db: &AsyncDatabase) -> anyhow::Result<(i64, Vec<i64>)> {
    db.create_tables(&models()).await?;
    let user = |name: &str| User {
        username: name.into(),
        password: Password::new("x"),
        email: "e".into(),
        ..Default::default()
    };
    let teacher = db.insert(user("teacher")).await?;
    db.insert(Teacher {
        user: teacher,
        name: "T".into(),
        department: "D".into(),
    })
    .await?;
    db.transaction(move |tx| -> Result<(), Error> {
        for i in 0..PREFILL_COURSES {
            tx.insert(&new_course(i, usize::MAX, teacher))?;
        }
        Ok(())
    })
    .await?;
    let picks = ids(STUDENTS * COURSES_PER_STUDENT, PREFILL_COURSES as i64);
    let mut students = Vec::new();
    for s in 0..STUDENTS {
        let id = db.insert(user(&format!("student{s}"))).await?;
        db.insert(Student {
            user: id,
            name: format!("S{s}"),
            ..Default::default()
        })
        .await?;
        let mut mine = picks[s * COURSES_PER_STUDENT..(s + 1) * COURSES_PER_STUDENT].to_vec();
        mine.sort_unstable();
        mine.dedup();
        for c in mine {
            db.link(Student::COURSES, id, c).await?;
        }
        students.push(id);
    }
    Ok((teacher, students))
}

/// Runs `n` operations of `w` on one side; returns what it read (to compare the sides).
async fn perform(
    db: &AsyncDatabase,
    raw: &Raw,
    w: Workload,
    typed: bool,
    keys: &[i64],
    tag: usize,
    teacher: i64,
) -> anyhow::Result<usize> {
    let mut seen = 0usize;
    match (w, typed) {
        (Workload::Insert, false) => {
            for (i, _) in keys.iter().enumerate() {
                let c = new_course(i, tag, teacher);
                let row = raw
                    .client
                    .query_one(&raw.insert, &[&c.name, &c.code, &c.teacher])
                    .await?;
                seen += usize::from(row.get::<_, i64>(0) > 0);
            }
        }
        (Workload::Insert, true) => {
            for (i, _) in keys.iter().enumerate() {
                seen += usize::from(db.insert(new_course(i, tag, teacher)).await? > 0);
            }
        }
        (Workload::Get, false) => {
            for &k in keys {
                let row = raw.client.query_opt(&raw.get, &[&k]).await?;
                seen += row.map_or(0, |r| course(&r).name.len());
            }
        }
        (Workload::Get, true) => {
            for &k in keys {
                seen += db.get::<Course>(k).await?.map_or(0, |c| c.name.len());
            }
        }
        (Workload::Join, false) => {
            for &k in keys {
                let rows = raw.client.query(&raw.join, &[&k]).await?;
                seen += rows.iter().map(course).count();
            }
        }
        (Workload::Join, true) => {
            for &k in keys {
                seen += db.linked(Student::COURSES, k).await?.len();
            }
        }
    }
    Ok(seen)
}

pub async fn run(url: &str, plan: &Plan) -> anyhow::Result<Vec<Comparison>> {
    ensure!(plan.rounds > 0, "no rounds");
    let db = AsyncDatabase::connect(url, POOL)
        .await?
        .with_hash_params(HashParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        });
    let (teacher, students) = setup(&db).await?;
    let raw = Raw::connect(url).await?;
    let mut rates = vec![(Vec::new(), Vec::new()); WORKLOADS.len()];
    for round in 0..plan.rounds {
        let raw_first = round % 2 == 0;
        for (slot, &w) in WORKLOADS.iter().enumerate() {
            let n = w.count(plan);
            let keys: Vec<i64> = match w {
                Workload::Insert | Workload::Get => ids(n, PREFILL_COURSES as i64),
                Workload::Join => ids(n, students.len() as i64)
                    .into_iter()
                    .filter_map(|i| students.get(usize::try_from(i - 1).ok()?).copied())
                    .collect(),
            };
            let mut seen = [0usize; 2];
            for typed in [!raw_first, raw_first] {
                let tag = round * 2 + usize::from(typed);
                let start = Instant::now();
                seen[usize::from(typed)] =
                    perform(&db, &raw, w, typed, &keys, tag, teacher).await?;
                let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
                let (raw_rates, typed_rates) = &mut rates[slot];
                if typed {
                    typed_rates.push(rate);
                } else {
                    raw_rates.push(rate);
                }
            }
            ensure!(
                seen[0] == seen[1] && seen[0] > 0,
                "{}: raw read {} and typed read {}",
                w.bench(),
                seen[0],
                seen[1]
            );
        }
    }
    Ok(WORKLOADS
        .iter()
        .zip(rates)
        .map(|(w, (raw, typed))| Comparison {
            bench: w.bench().to_owned(),
            peer: "raw tokio-postgres".to_owned(),
            metrics: vec![Metric::higher_is_better(
                w.unit(),
                Summary::of(&typed),
                Summary::of(&raw),
            )],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    /// The benchmark's code path on a real server (a smoke run, not a measurement).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn db_postgres_smoke_run() {
        let Some(url) = fluxon_server::testing::fresh_postgres("db_postgres_bench").await else {
            return;
        };
        let rows = super::run(&url, &super::Plan::full(2).scaled_down(100))
            .await
            .unwrap();
        let benches: Vec<&str> = rows.iter().map(|c| c.bench.as_str()).collect();
        assert_eq!(
            benches,
            [
                "db-postgres/insert",
                "db-postgres/point-select",
                "db-postgres/join-through-fk"
            ]
        );
        for c in &rows {
            let m = &c.metrics[0];
            assert!(m.fluxon.median > 0.0 && m.peer.median > 0.0, "{c:?}");
        }
    }
}
