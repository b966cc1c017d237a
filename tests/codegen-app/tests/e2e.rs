//! The campus schema served by generated routes and called through generated client stubs over
//! real QUIC on loopback, with the generated models behind it.

use std::sync::Arc;
use std::time::Duration;

use fluxon_client::{Code, Status};
use fluxon_codegen_app::campus::models::{self, Course, User};
use fluxon_codegen_app::campus::{
    self, Ack, Announcement, BroadcastRequest, EnrollRequest, LoginRequest, SignupRequest,
    UniversityClient, UniversityEventsCaller, UniversityEventsHandler,
};
use fluxon_codegen_app::{router, App, SCHEMA_SQL};
use fluxon_db::{AsyncDatabase, HashParams};
use fluxon_e2e::{client_config, connect, connect_with, server_config, start};
use prost_reflect::DescriptorPool;

/// A device answering announcements with its name.
struct Device {
    name: &'static str,
}

impl UniversityEventsHandler for Device {
    async fn announce(&self, request: Announcement) -> Result<Ack, Status> {
        Ok(Ack {
            device: self.name.to_owned(),
            text: request.text.to_uppercase(),
        })
    }
}

/// Cheap argon2 parameters: tests check behavior, not hash strength.
const TEST_HASH: HashParams = HashParams {
    m_cost: 8,
    t_cost: 1,
    p_cost: 1,
};

async fn app(dir: &std::path::Path) -> App {
    let db = AsyncDatabase::open(dir.join("campus.db"), 2)
        .await
        .unwrap()
        .with_hash_params(TEST_HASH);
    db.create_tables(&models::all()).await.unwrap();
    for (code, name) in [("CS101", "Programming"), ("MA101", "Calculus")] {
        db.insert(Course {
            code: code.to_owned(),
            name: name.to_owned(),
            ..Course::default()
        })
        .await
        .unwrap();
    }
    App::new(db)
}

fn signup(name: &str) -> SignupRequest {
    SignupRequest {
        username: name.to_owned(),
        password: format!("{name}'s secret"),
        email: format!("{name}@example.org"),
    }
}

#[tokio::test]
async fn generated_routes_and_stubs_over_quic() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), router(app(dir.path()).await)).await;
    let client = UniversityClient::new(connect(&server).await);

    // A login-required method refuses an anonymous session before the handler runs.
    let err = client
        .enroll(EnrollRequest {
            course_code: "CS101".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // The idempotent method (google.protobuf.Empty in, a list out).
    let list = client.list_courses(()).await.unwrap();
    let codes: Vec<&str> = list.courses.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["CS101", "MA101"]);

    // Signup stores a generated `User` model and logs the session in.
    let alice = client.signup(signup("alice")).await.unwrap();
    assert!(alice.user_id > 0);
    assert_eq!(client.connection().user_id(), Some(alice.user_id));
    let again = client.signup(signup("alice")).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");

    // Now the login-required method runs, linking through the generated relation.
    let reply = client
        .enroll(EnrollRequest {
            course_code: "MA101".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.course_codes, ["MA101"]);
    let reply = client
        .enroll(EnrollRequest {
            course_code: "CS101".into(),
        })
        .await
        .unwrap();
    // Linked rows come back ordered by primary key.
    assert_eq!(reply.course_codes, ["CS101", "MA101"]);
    let missing = client
        .enroll(EnrollRequest {
            course_code: "XX999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Login on a second connection verifies the hashed password.
    let other = UniversityClient::new(connect(&server).await);
    let wrong = other
        .login(LoginRequest {
            username: "alice".into(),
            password: "guess".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let ok = other
        .login(LoginRequest {
            username: "alice".into(),
            password: "alice's secret".into(),
        })
        .await
        .unwrap();
    assert_eq!(ok.user_id, alice.user_id);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn router_honors_method_options() {
    let dir = tempfile::tempdir().unwrap();
    let router = router(app(dir.path()).await);
    let routes: Vec<(String, bool, bool)> = router
        .routes()
        .map(|(name, o)| (name.to_owned(), o.requires_login, o.idempotent))
        .collect();
    let find = |n: &str| routes.iter().find(|r| r.0 == n).cloned();
    assert_eq!(
        find(campus::university_routes::ENROLL),
        Some((campus::university_routes::ENROLL.to_owned(), true, false))
    );
    assert_eq!(
        find(campus::university_routes::LIST_COURSES),
        Some((
            campus::university_routes::LIST_COURSES.to_owned(),
            false,
            true
        ))
    );
    assert_eq!(
        find(campus::university_routes::SIGNUP),
        Some((campus::university_routes::SIGNUP.to_owned(), false, false))
    );
    assert!(find(campus::REFLECTION_ROUTE).is_some());
    assert_eq!(routes.len(), 6, "{routes:?}");
}

#[tokio::test]
async fn reverse_service_from_a_handler_and_from_a_server_task() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), router(app(dir.path()).await)).await;
    let config = client_config(&server).reverse(campus::university_events_reverse_router(
        Arc::new(Device { name: "phone" }),
    ));
    let client = UniversityClient::new(connect_with(&server, config).await.unwrap());

    // From inside a handler: Broadcast calls the caller back through the typed caller.
    let denied = client
        .broadcast(BroadcastRequest { text: "hi".into() })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let bob = client.signup(signup("bob")).await.unwrap();
    let reply = client
        .broadcast(BroadcastRequest {
            text: "exam moved".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        reply.acks,
        [Ack {
            device: "phone".into(),
            text: "EXAM MOVED".into()
        }]
    );

    // From a server task: find the user's sessions and call each device.
    let sessions = server.sessions().for_user(bob.user_id).await.unwrap();
    assert_eq!(sessions.len(), 1);
    let caller = UniversityEventsCaller::new(sessions[0].clone());
    let ack = caller
        .announce(
            &Announcement {
                text: "library closes at 6".into(),
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(ack.text, "LIBRARY CLOSES AT 6");

    // A client without handlers answers not_found.
    let plain = connect(&server).await;
    let plain = UniversityClient::new(plain);
    plain.signup(signup("carol")).await.unwrap();
    let err = plain
        .broadcast(BroadcastRequest { text: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn schema_is_discoverable_through_the_reflection_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_config(dir.path()), router(app(dir.path()).await)).await;
    let conn = connect(&server).await;
    let bytes: Vec<u8> = conn.call(campus::REFLECTION_ROUTE, &()).await.unwrap();
    assert_eq!(bytes, campus::FILE_DESCRIPTOR_SET);
    let pool = DescriptorPool::decode(bytes.as_slice()).unwrap();
    let service = pool.get_service_by_name("campus.University").unwrap();
    let enroll = service.methods().find(|m| m.name() == "Enroll").unwrap();
    // Option values survive in the embedded set, so a generic client can read them.
    let ext = pool.get_extension_by_name("fluxon.method").unwrap();
    let opts = enroll.options();
    let method_opts = opts.get_extension(&ext);
    let requires_login = method_opts
        .as_message()
        .and_then(|m| m.get_field_by_name("requires_login"))
        .and_then(|v| v.as_bool());
    assert_eq!(requires_login, Some(true));
    server.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn written_sql_matches_the_models() {
    let ddl = fluxon_db::schema::create_sql(&models::all()).unwrap();
    assert!(SCHEMA_SQL.ends_with(&ddl), "{SCHEMA_SQL}");
    assert!(SCHEMA_SQL.contains("CREATE UNIQUE INDEX \"uq_enrollment_user_course\""));
    // The model metadata drives typed queries: the relation goes through Enrollment.
    let through = User::COURSES.through_meta().map(|m| m.name.as_str());
    assert_eq!(through, Some("Enrollment"));
}
