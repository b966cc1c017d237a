//! Shared setup for the integration tests.
#![allow(dead_code, unreachable_pub)]

use fluxon_db::testing::{models, Course, Student, Teacher, User};
use fluxon_db::{Database, Date, HashParams, Password};

/// Fast argon2 parameters for tests that hash many passwords.
pub fn cheap() -> HashParams {
    HashParams {
        m_cost: 64,
        t_cost: 1,
        p_cost: 1,
    }
}

pub fn user(name: &str) -> User {
    User {
        username: name.to_owned(),
        password: Password::new(format!("pw-{name}")),
        email: format!("{name}@uni.example"),
        ..Default::default()
    }
}

/// A database file in `dir` with the university tables.
pub fn open(dir: &tempfile::TempDir) -> Database {
    let db = Database::open(dir.path().join("uni.db"))
        .expect("open")
        .with_hash_params(cheap());
    db.create_tables(&models()).expect("create tables");
    db
}

/// Seeds a teacher (alice) with two courses and a student (bob). Returns
/// (teacher id, [course ids], student id).
pub fn seed(db: &Database) -> (i64, [i64; 2], i64) {
    let t = db.insert(&user("alice")).expect("user alice");
    db.insert(&Teacher {
        user: t,
        name: "Alice".into(),
        department: "CS".into(),
    })
    .expect("teacher");
    let c1 = db
        .insert(&Course {
            name: "Databases".into(),
            code: "CS101".into(),
            teacher: t,
            ..Default::default()
        })
        .expect("course 1");
    let c2 = db
        .insert(&Course {
            name: "Networks".into(),
            code: "CS102".into(),
            teacher: t,
            ..Default::default()
        })
        .expect("course 2");
    let s = db.insert(&user("bob")).expect("user bob");
    db.insert(&Student {
        user: s,
        name: "Bob".into(),
        birth_date: Date::new(2001, 5, 17).expect("date"),
    })
    .expect("student");
    (t, [c1, c2], s)
}
