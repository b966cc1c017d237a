//! A small application whose code comes from `proto/campus.proto` through fluxon-codegen: the
//! server implements the generated `University` trait on top of the generated models.

use std::time::Duration;

use fluxon_db::{AsyncDatabase, ErrorKind, Password};
use fluxon_server::{Request, Router, Status};

/// Everything generated for package `campus`.
pub mod campus {
    fluxon_codegen::include_schema!("campus");
}

/// The original's university models (fluxon-codegen's golden fixture).
pub mod university {
    fluxon_codegen::include_schema!("university");
}

/// The cloud application's models (fluxon-codegen's golden fixture).
pub mod cloud {
    fluxon_codegen::include_schema!("cloud");
}

use campus::models::{Course, Enrollment, User};
use campus::{
    Ack, Announcement, BroadcastReply, BroadcastRequest, CourseInfo, CourseList, EnrollReply,
    EnrollRequest, LoginReply, LoginRequest, SignupReply, SignupRequest, UniversityEventsCaller,
};

/// The SQL schema codegen wrote for `campus`.
pub const SCHEMA_SQL: &str = include_str!(concat!(env!("OUT_DIR"), "/campus.sql"));

/// How long the server waits for a client to answer an announcement.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Maps a database error to the status a client sees.
pub fn db_status(e: fluxon_db::Error) -> Status {
    match e.kind() {
        ErrorKind::AlreadyExists => Status::already_exists(e.to_string()),
        ErrorKind::FailedPrecondition => Status::failed_precondition(e.to_string()),
        ErrorKind::InvalidArgument => Status::invalid_argument(e.to_string()),
        ErrorKind::NotFound => Status::not_found(e.to_string()),
        ErrorKind::Unavailable => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

/// The campus server.
#[derive(Debug)]
pub struct App {
    db: AsyncDatabase,
}

impl App {
    /// A server over `db` (whose tables exist).
    pub fn new(db: AsyncDatabase) -> Self {
        Self { db }
    }

    /// The database.
    pub fn db(&self) -> &AsyncDatabase {
        &self.db
    }
}

/// The application's router: the generated `University` routes plus schema reflection.
pub fn router(app: App) -> Router {
    campus::UniversityServer::new(app)
        .into_router()
        .merge(campus::reflection_router())
}

impl campus::University for App {
    async fn signup(&self, request: Request<SignupRequest>) -> Result<SignupReply, Status> {
        let user = User {
            username: request.username.clone(),
            password: Password::new(request.password.clone()),
            email: request.email.clone(),
            ..User::default()
        };
        let user_id = self.db.insert(user).await.map_err(db_status)?;
        request.login(user_id).await?;
        Ok(SignupReply { user_id })
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<LoginReply, Status> {
        let found = self
            .db
            .verify_password(
                User::USERNAME.eq(request.username.as_str()),
                request.password.clone(),
            )
            .await
            .map_err(db_status)?;
        let user_id = found.ok_or_else(|| Status::unauthenticated("wrong username or password"))?;
        request.login(user_id).await?;
        Ok(LoginReply { user_id })
    }

    async fn enroll(&self, request: Request<EnrollRequest>) -> Result<EnrollReply, Status> {
        let user = request.require_user()?;
        let course = self
            .db
            .select::<Course>()
            .filter(Course::CODE.eq(request.course_code.as_str()))
            .first()
            .await
            .map_err(db_status)?
            .ok_or_else(|| Status::not_found(format!("no course {}", request.course_code)))?;
        self.db
            .insert(Enrollment {
                user,
                course: course.id,
                ..Enrollment::default()
            })
            .await
            .map_err(db_status)?;
        let courses = self
            .db
            .linked(User::COURSES, user)
            .await
            .map_err(db_status)?;
        Ok(EnrollReply {
            course_codes: courses.into_iter().map(|c| c.code).collect(),
        })
    }

    async fn list_courses(&self, _request: Request<()>) -> Result<CourseList, Status> {
        let courses = self
            .db
            .select::<Course>()
            .order_by(Course::CODE.asc())
            .fetch()
            .await
            .map_err(db_status)?;
        Ok(CourseList {
            courses: courses
                .into_iter()
                .map(|c| CourseInfo {
                    code: c.code,
                    name: c.name,
                })
                .collect(),
        })
    }

    async fn broadcast(
        &self,
        request: Request<BroadcastRequest>,
    ) -> Result<BroadcastReply, Status> {
        let caller = UniversityEventsCaller::new(request.session().clone());
        let ack: Ack = caller
            .announce(
                &Announcement {
                    text: request.text.clone(),
                },
                ANNOUNCE_TIMEOUT,
            )
            .await?;
        Ok(BroadcastReply { acks: vec![ack] })
    }
}
