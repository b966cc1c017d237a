//! The university application on three nodes (separate processes on 127.0.0.1) sharing one
//! PostgreSQL database and one NATS server: a teacher connected to node 2 announces, and the
//! announcement reaches two students whose devices are connected to nodes 3 and 1. Skipped
//! (one line each) without `FLUXON_TEST_POSTGRES` or `FLUXON_TEST_NATS`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fluxon_client::{ClientConfig, Connection, Status, Trust};
use fluxon_examples::harness::ClusterProcesses;
use tokio::sync::mpsc;
use university::university::signup_request::Profile;
use university::university::{
    university_events_reverse_router, Account, Ack, AnnounceRequest, Announcement,
    CreateCourseRequest, EnrollRequest, SignupRequest, StudentProfile, TeacherProfile,
    UniversityClient, UniversityEventsHandler,
};

struct Device {
    name: &'static str,
    seen: mpsc::UnboundedSender<(&'static str, Announcement)>,
}

impl UniversityEventsHandler for Device {
    async fn notify(&self, request: Announcement) -> Result<Ack, Status> {
        let _ = self.seen.send((self.name, request));
        Ok(Ack {})
    }
}

async fn connect(
    cluster: &ClusterProcesses,
    node: usize,
    device: Option<Device>,
) -> UniversityClient {
    let mut config = ClientConfig::new(Trust::CertificateFile(cluster.cert.clone()))
        .connect_timeout(Duration::from_secs(10));
    if let Some(device) = device {
        config = config.reverse(university_events_reverse_router(Arc::new(device)));
    }
    let addr = cluster.addrs[node].parse().unwrap();
    UniversityClient::new(Connection::connect(addr, config).await.unwrap())
}

async fn student(client: &UniversityClient, username: &str, name: &str) -> Account {
    client
        .signup(SignupRequest {
            username: username.into(),
            password: "correct horse battery".into(),
            email: format!("{username}@uni.example"),
            profile: Some(Profile::Student(StudentProfile {
                name: name.into(),
                birth_date: "1912-06-23".into(),
            })),
        })
        .await
        .unwrap()
}

#[test]
fn an_announcement_reaches_students_on_two_other_nodes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(nats) = fluxon_server::testing::nats("university_cluster") else {
        return;
    };
    let Some(url) = rt.block_on(fluxon_server::testing::fresh_postgres("university_cluster"))
    else {
        return;
    };
    let prefix = fluxon_server::testing::unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterProcesses::start(
        Path::new(env!("CARGO_BIN_EXE_university-server")),
        university::APP_NAME,
        dir.path(),
        3,
        &[
            "--database",
            &url,
            "--state-database",
            &url,
            "--nats",
            &nats,
            "--cluster-prefix",
            &prefix,
        ],
        &[],
    )
    .expect("three nodes start");

    rt.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The teacher on node 2; Alan's phone on node 3; Grace's laptop on node 1.
        let teacher = connect(&cluster, 1, None).await;
        let alan = connect(
            &cluster,
            2,
            Some(Device {
                name: "alan",
                seen: tx.clone(),
            }),
        )
        .await;
        let grace = connect(
            &cluster,
            0,
            Some(Device {
                name: "grace",
                seen: tx,
            }),
        )
        .await;
        teacher
            .signup(SignupRequest {
                username: "ada".into(),
                password: "correct horse battery".into(),
                email: "ada@uni.example".into(),
                profile: Some(Profile::Teacher(TeacherProfile {
                    name: "Ada Lovelace".into(),
                    department: "Mathematics".into(),
                })),
            })
            .await
            .unwrap();
        student(&alan, "alan", "Alan Turing").await;
        student(&grace, "grace", "Grace Hopper").await;
        let course = teacher
            .create_course(CreateCourseRequest {
                name: "Programming".into(),
                code: "CS101".into(),
            })
            .await
            .unwrap();
        for s in [&alan, &grace] {
            s.enroll(EnrollRequest {
                course_code: course.code.clone(),
            })
            .await
            .unwrap();
        }
        let reply = teacher
            .announce(AnnounceRequest {
                course_code: "CS101".into(),
                text: "the exam moves to Friday".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            (reply.students, reply.delivered, reply.failed),
            (2, 2, 0),
            "both students' devices, on nodes 3 and 1, got it"
        );
        // The devices saw it (the reply counts only what the clients acknowledged).
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (name, announcement) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("an announcement arrives")
                .expect("the channel is open");
            assert_eq!(announcement.text, "the exam moves to Friday");
            assert_eq!(announcement.teacher, "Ada Lovelace");
            seen.push(name);
        }
        seen.sort_unstable();
        assert_eq!(seen, ["alan", "grace"]);
    });
}
