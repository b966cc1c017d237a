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

/// Where a test's database lives: a SQLite file in a temporary directory, or a fresh
/// database on the PostgreSQL server that `FLUXON_TEST_POSTGRES` names.
pub struct Place {
    location: String,
    dir: Option<tempfile::TempDir>,
}

impl Place {
    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = dir.path().join("uni.db").display().to_string();
        Self {
            location,
            dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (after one line saying so) without a server.
    pub fn postgres(test: &str) -> Option<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(Self::postgres_async(test))
    }

    /// [`Place::postgres`] from inside a runtime.
    pub async fn postgres_async(test: &str) -> Option<Self> {
        let location = fluxon_server::testing::fresh_postgres(test).await?;
        Some(Self {
            location,
            dir: None,
        })
    }

    /// The SQLite file or the PostgreSQL URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The directory of the SQLite file (`None` on PostgreSQL).
    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }

    /// A connection with cheap password hashing and no tables created.
    pub fn open(&self) -> Database {
        Database::open_location(&self.location)
            .expect("open")
            .with_hash_params(cheap())
    }

    /// [`Place::open`] after creating the university tables.
    pub fn create(&self) -> Database {
        let db = self.open();
        db.create_tables(&models()).expect("create tables");
        db
    }

    /// A pool of `size` connections with cheap password hashing and no tables created.
    pub async fn open_async(&self, size: usize) -> fluxon_db::AsyncDatabase {
        fluxon_db::AsyncDatabase::open_location(&self.location, size)
            .await
            .expect("open")
            .with_hash_params(cheap())
    }
}

/// Turns each named `fn(&Place)` into two tests: `sqlite::name` and `postgres::name` (the
/// latter returns early, after one line saying why, without a server).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::common::Place::sqlite()); } )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(place) = super::common::Place::postgres(stringify!($name)) {
                        super::$name(&place);
                    }
                }
            )*
        }
    };
}

/// [`on_both_backends`] for `async fn(Place)` tests, on a two-thread runtime.
#[macro_export]
macro_rules! on_both_backends_async {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::common::Place::sqlite()).await; }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(place) =
                        super::common::Place::postgres_async(stringify!($name)).await
                    {
                        super::$name(place).await;
                    }
                }
            )*
        }
    };
}
