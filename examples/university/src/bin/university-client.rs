//! The university example's client: plays a teacher and a student (on two devices) against a
//! running `university-server` and prints each step.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use clap::Parser;
use fluxon_client::{Code, Connection, Status};
use fluxon_examples::ServerArgs;
use tokio::sync::mpsc;
use university::university::signup_request::Profile;
use university::university::{
    university_events_reverse_router, Account, Ack, AnnounceRequest, Announcement,
    CreateCourseRequest, EnrollRequest, LoginRequest, SignupRequest, StudentProfile,
    TeacherProfile, UniversityClient, UniversityEventsHandler,
};

/// Runs the university flow against a running university-server.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Suffix making this run's usernames and course codes unique (default: from the clock),
    /// so the flow can run again against the same server.
    #[arg(long)]
    run_id: Option<String>,
}

/// How long the client waits for the announcement to reach the student's devices.
const NOTIFY_WAIT: Duration = Duration::from_secs(10);

/// A student's device: prints announcements and reports them to the flow.
struct Device {
    name: &'static str,
    seen: mpsc::UnboundedSender<(&'static str, Announcement)>,
}

impl UniversityEventsHandler for Device {
    async fn notify(&self, request: Announcement) -> Result<Ack, Status> {
        println!(
            "  <- [{}] announcement in {} ({}) from {}: {}",
            self.name, request.course_code, request.course_name, request.teacher, request.text
        );
        let _ = self.seen.send((self.name, request));
        Ok(Ack {})
    }
}

fn role(account: &Account) -> &'static str {
    match account.role() {
        university::university::Role::Teacher => "teacher",
        university::university::Role::Student => "student",
        university::university::Role::Unspecified => "unknown",
    }
}

async fn connect(args: &Args, device: Option<Device>) -> anyhow::Result<UniversityClient> {
    let mut config = args.server.client_config();
    if let Some(device) = device {
        config = config.reverse(university_events_reverse_router(Arc::new(device)));
    }
    let conn = Connection::connect(args.server.addr, config)
        .await
        .with_context(|| {
            format!(
                "cannot connect to {} (certificate {})",
                args.server.addr,
                args.server.cert_path().display()
            )
        })?;
    Ok(UniversityClient::new(conn))
}

/// Expects `result` to fail with `code`, printing the refusal.
fn refused<T>(step: &str, result: Result<T, Status>, code: Code) -> anyhow::Result<()> {
    match result {
        Err(status) if status.code() == code => {
            println!("{step:<28} -> refused: {status}");
            Ok(())
        }
        Err(status) => bail!("{step}: expected {code:?}, got {status}"),
        Ok(_) => bail!("{step}: expected {code:?}, but it succeeded"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = args.run_id.clone().unwrap_or_else(|| {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{:x}", millis & 0xff_ffff)
    });
    let (tx, mut seen) = mpsc::unbounded_channel();

    let teacher = connect(&args, None).await?;
    let laptop = connect(
        &args,
        Some(Device {
            name: "laptop",
            seen: tx.clone(),
        }),
    )
    .await?;
    let phone = connect(
        &args,
        Some(Device {
            name: "phone",
            seen: tx,
        }),
    )
    .await?;
    println!("connected to {} (3 connections)", args.server.addr);

    // Accounts: a teacher, and a student whose password the database hashes.
    let ada = format!("ada-{run}");
    let alan = format!("alan-{run}");
    let password = format!("correct horse {run}");
    let account = teacher
        .signup(SignupRequest {
            username: ada.clone(),
            password: password.clone(),
            email: format!("{ada}@uni.example"),
            profile: Some(Profile::Teacher(TeacherProfile {
                name: "Ada Lovelace".into(),
                department: "Mathematics".into(),
            })),
        })
        .await?;
    println!(
        "{:<28} -> user {} ({}, {})",
        "teacher signup",
        account.user_id,
        role(&account),
        account.name
    );

    refused(
        "enroll before login",
        laptop
            .enroll(EnrollRequest {
                course_code: "none".into(),
            })
            .await,
        Code::Unauthenticated,
    )?;
    let account = laptop
        .signup(SignupRequest {
            username: alan.clone(),
            password: password.clone(),
            email: format!("{alan}@uni.example"),
            profile: Some(Profile::Student(StudentProfile {
                name: "Alan Turing".into(),
                birth_date: "1912-06-23".into(),
            })),
        })
        .await?;
    println!(
        "{:<28} -> user {} ({}, {})",
        "student signup (laptop)",
        account.user_id,
        role(&account),
        account.name
    );
    let student_id = account.user_id;
    refused(
        "login with a wrong password",
        phone
            .login(LoginRequest {
                username: alan.clone(),
                password: "not the password".into(),
            })
            .await,
        Code::Unauthenticated,
    )?;
    let account = phone
        .login(LoginRequest {
            username: alan.clone(),
            password: password.clone(),
        })
        .await?;
    ensure!(account.user_id == student_id, "login found another user");
    println!(
        "{:<28} -> user {} ({})",
        "student login (phone)",
        account.user_id,
        role(&account)
    );

    // Courses: teachers only.
    refused(
        "student creates a course",
        laptop
            .create_course(CreateCourseRequest {
                name: "Hacking".into(),
                code: format!("HK-{run}"),
            })
            .await,
        Code::PermissionDenied,
    )?;
    let cs = format!("CS101-{run}");
    let ma = format!("MA101-{run}");
    for (code, name) in [(&cs, "Programming"), (&ma, "Calculus")] {
        let course = teacher
            .create_course(CreateCourseRequest {
                name: name.into(),
                code: code.clone(),
            })
            .await?;
        println!(
            "{:<28} -> {} {} (taught by {})",
            "create course", course.code, course.name, course.teacher
        );
    }

    // Enrollment.
    let course = laptop
        .enroll(EnrollRequest {
            course_code: cs.clone(),
        })
        .await?;
    println!("{:<28} -> {} {}", "enroll", course.code, course.name);
    refused(
        "enroll again",
        phone
            .enroll(EnrollRequest {
                course_code: cs.clone(),
            })
            .await,
        Code::AlreadyExists,
    )?;
    refused(
        "teacher enrolls",
        teacher
            .enroll(EnrollRequest {
                course_code: ma.clone(),
            })
            .await,
        Code::PermissionDenied,
    )?;

    let mine = phone.my_courses(()).await?;
    let codes: Vec<&str> = mine.courses.iter().map(|c| c.code.as_str()).collect();
    println!("{:<28} -> {}", "student's courses", codes.join(", "));
    ensure!(
        codes == [cs.as_str()],
        "the student should be enrolled in {cs} only"
    );
    let taught = teacher.my_courses(()).await?;
    let codes: Vec<&str> = taught.courses.iter().map(|c| c.code.as_str()).collect();
    println!("{:<28} -> {}", "teacher's courses", codes.join(", "));
    ensure!(
        codes == [cs.as_str(), ma.as_str()],
        "the teacher teaches two courses"
    );
    // The whole catalog, one course per message of a server stream.
    let mut catalog = phone.catalog(()).await?;
    let mut codes = Vec::new();
    while let Some(course) = catalog.message().await? {
        codes.push(course.code);
    }
    println!("{:<28} -> {}", "catalog (streamed)", codes.join(", "));
    ensure!(
        codes.contains(&cs) && codes.contains(&ma),
        "the catalog lists the new courses"
    );

    // The announcement reaches both of the student's devices through reverse calls.
    let reply = teacher
        .announce(AnnounceRequest {
            course_code: cs.clone(),
            text: "the exam moves to Friday".into(),
        })
        .await?;
    println!(
        "{:<28} -> {} student(s), delivered to {} device(s), {} failed",
        "announce", reply.students, reply.delivered, reply.failed
    );
    ensure!(
        reply.students == 1 && reply.delivered == 2 && reply.failed == 0,
        "the announcement should reach the student's two devices"
    );
    let mut devices = Vec::new();
    while devices.len() < 2 {
        match tokio::time::timeout(NOTIFY_WAIT, seen.recv()).await {
            Ok(Some((device, a))) if a.course_code == cs => devices.push(device),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => bail!("the student's devices did not both get the announcement"),
        }
    }
    devices.sort_unstable();
    println!("{:<28} -> {}", "notified devices", devices.join(", "));

    for c in [&teacher, &laptop, &phone] {
        c.connection().close();
    }
    println!("done");
    Ok(())
}
