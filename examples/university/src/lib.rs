//! The university example: the original Fluxon's university application on codegen,
//! fluxon-db and fluxon-app.
//!
//! `proto/university.proto` declares the models (User as the authorized user, Teacher, Course,
//! Student, Enrollment), the `University` service and the reverse `UniversityEvents` service.
//! [`Service`] implements the generated `University` trait; `university-server` serves it with
//! [`fluxon_app::App`], `university-client` plays a teacher and a student against it.

use std::sync::Arc;
use std::time::Duration;

use fluxon_app::ServerSlot;
use fluxon_db::{AsyncDatabase, Date, HashParams, Password};
use fluxon_server::{Replies, Request, Router, Status};
use futures_util::StreamExt as _;
use tokio::task::JoinSet;

/// Everything generated for package `university`.
pub mod university {
    fluxon_codegen::include_schema!("university");
}

use university::models::{Course, Enrollment, Student, Teacher, User};
use university::signup_request::Profile;
use university::{
    Account, AnnounceReply, AnnounceRequest, Announcement, CourseInfo, CourseList,
    CreateCourseRequest, EnrollRequest, LoginRequest, Role, SignupRequest, UniversityEventsCaller,
};

/// The application's name: the server binary prints `university listening on ADDR`.
pub const APP_NAME: &str = "university";

/// How long the server waits for one device to acknowledge an announcement.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest announcement accepted, in bytes.
pub const MAX_ANNOUNCEMENT: usize = 4096;

/// The university service over its database.
#[derive(Debug, Clone)]
pub struct Service {
    db: Arc<AsyncDatabase>,
    server: ServerSlot,
}

/// The university server as a fluxon-app application (what `university-server` runs): the
/// models and their schema versions, and the routes.
pub fn app() -> fluxon_app::App {
    fluxon_app::App::new(APP_NAME)
        .about("Fluxon's university example: teachers, courses, students and announcements")
        .models(university::models::all())
        .schema_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schema"))
        .router_with(|ctx| router(ctx.database(), ctx.server()))
}

/// The server's router: the generated `University` routes plus schema reflection.
pub fn router(db: Arc<AsyncDatabase>, server: ServerSlot) -> Router {
    university::UniversityServer::new(Service { db, server })
        .into_router()
        .merge(university::reflection_router())
}

/// What the logged-in user is, with their profile row.
enum Member {
    Teacher(Teacher),
    Student(Student),
}

fn non_empty<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    Ok(value)
}

impl Service {
    /// The caller's teacher or student profile.
    async fn member(&self, user: i64) -> Result<Member, Status> {
        if let Some(t) = self.db.get::<Teacher>(user).await? {
            return Ok(Member::Teacher(t));
        }
        if let Some(s) = self.db.get::<Student>(user).await? {
            return Ok(Member::Student(s));
        }
        Err(Status::failed_precondition(
            "the account has neither a teacher nor a student profile",
        ))
    }

    async fn teacher<T>(&self, req: &Request<T>) -> Result<Teacher, Status> {
        match self.member(req.require_user()?).await? {
            Member::Teacher(t) => Ok(t),
            Member::Student(_) => Err(Status::permission_denied("teachers only")),
        }
    }

    async fn account(&self, user_id: i64) -> Result<Account, Status> {
        Ok(match self.member(user_id).await? {
            Member::Teacher(t) => Account {
                user_id,
                role: Role::Teacher as i32,
                name: t.name,
            },
            Member::Student(s) => Account {
                user_id,
                role: Role::Student as i32,
                name: s.name,
            },
        })
    }

    async fn course_by_code(&self, code: &str) -> Result<Course, Status> {
        self.db
            .select::<Course>()
            .filter(Course::CODE.eq(code))
            .first()
            .await?
            .ok_or_else(|| Status::not_found(format!("no course {code}")))
    }

    async fn course_info(&self, course: Course) -> Result<CourseInfo, Status> {
        let teacher = self
            .db
            .get::<Teacher>(course.teacher)
            .await?
            .map(|t| t.name)
            .unwrap_or_default();
        Ok(CourseInfo {
            code: course.code,
            name: course.name,
            teacher,
        })
    }
}

impl university::University for Service {
    async fn signup(&self, req: Request<SignupRequest>) -> Result<Account, Status> {
        let username = non_empty("username", &req.username)?.to_owned();
        if req.password.len() < 8 {
            return Err(Status::invalid_argument(
                "the password must have at least 8 characters",
            ));
        }
        let email = req.email.trim().to_owned();
        let profile = req
            .profile
            .clone()
            .ok_or_else(|| Status::invalid_argument("a teacher or student profile is needed"))?;
        // Validate the profile before anything is written.
        let profile = match profile {
            Profile::Teacher(t) => Member::Teacher(Teacher {
                user: 0,
                name: non_empty("name", &t.name)?.to_owned(),
                department: t.department.trim().to_owned(),
            }),
            Profile::Student(s) => Member::Student(Student {
                user: 0,
                name: non_empty("name", &s.name)?.to_owned(),
                birth_date: s.birth_date.parse::<Date>().map_err(|_| {
                    Status::invalid_argument("birth_date must be a YYYY-MM-DD date")
                })?,
            }),
        };
        // Hash (argon2id) before taking the database's write lock, on a blocking thread.
        let plain = req.password.clone();
        let phc = tokio::task::spawn_blocking(move || HashParams::default().hash(&plain))
            .await
            .map_err(|_| Status::internal("password hashing failed"))??;
        let user = User {
            username,
            password: Password::Hashed(phc),
            email,
            ..User::default()
        };
        // The user and its profile in one transaction: no account without a profile.
        let user_id = self
            .db
            .transaction(move |tx| -> Result<i64, fluxon_db::Error> {
                let id = tx.insert(&user)?;
                match profile {
                    Member::Teacher(mut t) => {
                        t.user = id;
                        tx.insert(&t)?;
                    }
                    Member::Student(mut s) => {
                        s.user = id;
                        tx.insert(&s)?;
                    }
                }
                Ok(id)
            })
            .await?;
        req.login(user_id).await?;
        self.account(user_id).await
    }

    async fn login(&self, req: Request<LoginRequest>) -> Result<Account, Status> {
        let user_id = self
            .db
            .verify_password(
                User::USERNAME.eq(req.username.as_str()),
                req.password.clone(),
            )
            .await?
            .ok_or_else(|| Status::unauthenticated("wrong username or password"))?;
        req.login(user_id).await?;
        self.account(user_id).await
    }

    async fn create_course(&self, req: Request<CreateCourseRequest>) -> Result<CourseInfo, Status> {
        let teacher = self.teacher(&req).await?;
        let course = Course {
            name: non_empty("name", &req.name)?.to_owned(),
            code: non_empty("code", &req.code)?.to_owned(),
            teacher: teacher.user,
            ..Course::default()
        };
        let info = CourseInfo {
            code: course.code.clone(),
            name: course.name.clone(),
            teacher: teacher.name,
        };
        self.db.insert(course).await?;
        Ok(info)
    }

    async fn enroll(&self, req: Request<EnrollRequest>) -> Result<CourseInfo, Status> {
        let student = match self.member(req.require_user()?).await? {
            Member::Student(s) => s,
            Member::Teacher(_) => return Err(Status::permission_denied("students only")),
        };
        let course = self.course_by_code(req.course_code.trim()).await?;
        self.db
            .insert(Enrollment {
                student: student.user,
                course: course.id,
                ..Enrollment::default()
            })
            .await
            .map_err(|e| match e.kind() {
                fluxon_db::ErrorKind::AlreadyExists => {
                    Status::already_exists(format!("already enrolled in {}", course.code))
                }
                _ => e.into(),
            })?;
        self.course_info(course).await
    }

    async fn my_courses(&self, req: Request<()>) -> Result<CourseList, Status> {
        let courses = match self.member(req.require_user()?).await? {
            Member::Teacher(t) => {
                self.db
                    .select::<Course>()
                    .filter(Course::TEACHER.eq(t.user))
                    .order_by(Course::CODE.asc())
                    .fetch()
                    .await?
            }
            Member::Student(s) => self.db.linked(Student::COURSES, s.user).await?,
        };
        let mut out = Vec::with_capacity(courses.len());
        for c in courses {
            out.push(self.course_info(c).await?);
        }
        Ok(CourseList { courses: out })
    }

    async fn catalog(&self, req: Request<()>) -> Result<Replies<CourseInfo>, Status> {
        req.require_user()?;
        let courses = self
            .db
            .select::<Course>()
            .order_by(Course::CODE.asc())
            .fetch()
            .await?;
        // Each course's teacher is looked up as the reader gets to it.
        let service = self.clone();
        Ok(Box::pin(futures_util::stream::iter(courses).then(
            move |course| {
                let service = service.clone();
                async move { service.course_info(course).await }
            },
        )))
    }

    async fn announce(&self, req: Request<AnnounceRequest>) -> Result<AnnounceReply, Status> {
        let teacher = self.teacher(&req).await?;
        let text = non_empty("text", &req.text)?;
        if text.len() > MAX_ANNOUNCEMENT {
            return Err(Status::invalid_argument(format!(
                "an announcement has at most {MAX_ANNOUNCEMENT} bytes"
            )));
        }
        let course = self.course_by_code(req.course_code.trim()).await?;
        if course.teacher != teacher.user {
            return Err(Status::permission_denied(format!(
                "{} is not your course",
                course.code
            )));
        }
        let students = self.db.linked_from(Student::COURSES, course.id).await?;
        let server = self
            .server
            .get()
            .ok_or_else(|| Status::unavailable("the server is starting"))?;
        let announcement = Announcement {
            course_code: course.code,
            course_name: course.name,
            teacher: teacher.name,
            text: text.to_owned(),
        };
        // Every connected device of every enrolled student, called concurrently (in a cluster,
        // the devices connected to other nodes too: their calls are relayed).
        let mut calls = JoinSet::new();
        for student in &students {
            for session in server.sessions().for_user(student.user).await? {
                let caller = UniversityEventsCaller::new(session);
                let announcement = announcement.clone();
                calls.spawn(async move { caller.notify(&announcement, NOTIFY_TIMEOUT).await });
            }
        }
        let (mut delivered, mut failed) = (0u32, 0u32);
        while let Some(result) = calls.join_next().await {
            match result {
                Ok(Ok(_)) => delivered += 1,
                Ok(Err(status)) => {
                    tracing::debug!(%status, "announcement not delivered");
                    failed += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "announcement task failed");
                    failed += 1;
                }
            }
        }
        Ok(AnnounceReply {
            students: u32::try_from(students.len()).unwrap_or(u32::MAX),
            delivered,
            failed,
        })
    }
}
