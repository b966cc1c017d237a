//! The same checks against every backend: SQLite always, PostgreSQL when
//! [`POSTGRES_ENV`](crate::testing::POSTGRES_ENV) names a server.

use super::*;

fn session(byte: u8, user_id: Option<i64>, at: u64) -> StoredSession {
    StoredSession {
        id: SessionId::from_bytes([byte; 16]),
        user_id,
        created_at: at,
        last_seen: at,
    }
}

/// The stores to check: an in-memory SQLite one, a SQLite file, and a fresh PostgreSQL
/// database when one is configured.
async fn stores(suite: &str) -> (Vec<StateStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![
        StateStore::in_memory(),
        StateStore::open(&StateLocation::Sqlite(dir.path().join("state.db")))
            .await
            .unwrap(),
    ];
    if let Some(url) = crate::testing::fresh_postgres(suite).await {
        stores.push(
            StateStore::open(&StateLocation::Postgres(url))
                .await
                .unwrap(),
        );
    }
    (stores, dir)
}

#[tokio::test]
async fn sessions_round_trip() {
    let (stores, _dir) = stores("state_sessions").await;
    for store in stores {
        let backend = store.location().backend();
        let s = session(3, None, 10);
        store.insert_session(s, "n1").await.unwrap();
        assert_eq!(
            store.load_session(s.id).await.unwrap(),
            Some(s),
            "{backend}"
        );
        assert!(store.set_user(s.id, Some(42), 20).await.unwrap());
        let loaded = store.load_session(s.id).await.unwrap().unwrap();
        assert_eq!(
            (loaded.user_id, loaded.last_seen),
            (Some(42), 20),
            "{backend}"
        );
        store.attach(s.id, "n1", 30).await.unwrap();
        assert_eq!(store.purge_idle(30).await.unwrap(), 0, "{backend}");
        assert_eq!(store.purge_idle(31).await.unwrap(), 1, "{backend}");
        assert_eq!(store.load_session(s.id).await.unwrap(), None, "{backend}");
        assert!(!store.set_user(s.id, None, 40).await.unwrap(), "{backend}");
        store.delete_session(s.id).await.unwrap();
        // A session id is unique.
        store.insert_session(s, "n1").await.unwrap();
        assert!(store.insert_session(s, "n2").await.is_err(), "{backend}");
        store.delete_session(s.id).await.unwrap();
        assert_eq!(store.load_session(s.id).await.unwrap(), None, "{backend}");
    }
}

#[tokio::test]
async fn a_grant_is_used_once_until_forgotten_after_expiry() {
    let (stores, _dir) = stores("state_grants").await;
    for store in stores {
        let backend = store.location().backend();
        assert!(
            store.record_grant_use([1; 16], 100).await.unwrap(),
            "{backend}"
        );
        assert!(
            !store.record_grant_use([1; 16], 100).await.unwrap(),
            "{backend}"
        );
        assert!(
            store.record_grant_use([2; 16], 200).await.unwrap(),
            "{backend}"
        );
        // Purging at 150 forgets only the grant that expired.
        assert_eq!(store.purge_used_grants(150).await.unwrap(), 1, "{backend}");
        assert!(
            !store.record_grant_use([2; 16], 200).await.unwrap(),
            "{backend}"
        );
        assert!(
            store.record_grant_use([1; 16], 100).await.unwrap(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn concurrent_uses_of_one_grant_let_exactly_one_through() {
    let (stores, _dir) = stores("state_grant_race").await;
    for store in stores {
        let backend = store.location().backend();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let store = store.clone();
            tasks.spawn(async move { store.record_grant_use([9; 16], 1_000).await.unwrap() });
        }
        let mut first_uses = 0;
        while let Some(accepted) = tasks.join_next().await {
            first_uses += usize::from(accepted.unwrap());
        }
        assert_eq!(first_uses, 1, "{backend}");
    }
}

#[tokio::test]
async fn presence_follows_the_live_connection() {
    let (stores, _dir) = stores("state_presence").await;
    for store in stores {
        let backend = store.location().backend();
        let a = session(1, Some(7), 1);
        let b = session(2, Some(7), 1);
        let other = session(3, Some(8), 1);
        store.insert_session(a, "n1").await.unwrap();
        store.insert_session(b, "n2").await.unwrap();
        store.insert_session(other, "n1").await.unwrap();
        let nodes = |p: Vec<Presence>| p.into_iter().map(|p| p.node).collect::<Vec<_>>();
        assert_eq!(
            nodes(store.presence_of_user(7).await.unwrap()),
            ["n1", "n2"],
            "{backend}"
        );
        // Session b moves to n3; n2's late detach does not erase where it is now.
        store.attach(b.id, "n3", 2).await.unwrap();
        store.detach(b.id, "n2", 3).await.unwrap();
        assert_eq!(
            nodes(store.presence_of_user(7).await.unwrap()),
            ["n1", "n3"],
            "{backend}"
        );
        store.detach(b.id, "n3", 4).await.unwrap();
        assert_eq!(
            nodes(store.presence_of_user(7).await.unwrap()),
            ["n1"],
            "{backend}"
        );
        // The detach still counts as being seen.
        assert_eq!(
            store.load_session(b.id).await.unwrap().unwrap().last_seen,
            4
        );
        // A node that starts again holds no connection.
        assert_eq!(store.clear_node("n1").await.unwrap(), 2, "{backend}");
        assert!(
            store.presence_of_user(7).await.unwrap().is_empty(),
            "{backend}"
        );
        assert!(
            store.presence_of_user(8).await.unwrap().is_empty(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_bad_postgres_url_is_one_clear_error() {
    let err = StateStore::open(&StateLocation::Postgres(
        "postgres://u:pw@h:notaport/db".into(),
    ))
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("invalid PostgreSQL URL"), "{text}");
    assert!(!text.contains("pw@"), "password shown: {text}");

    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = StateStore::open(&StateLocation::Postgres(
        "postgres://u:pw@127.0.0.1:1/db".into(),
    ))
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cannot connect to PostgreSQL at postgres://u:***@127.0.0.1:1/db"),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn locations_are_read_as_users_write_them() {
    assert_eq!(
        StateLocation::parse("postgres://a@b/c"),
        StateLocation::Postgres("postgres://a@b/c".into())
    );
    assert_eq!(
        StateLocation::parse("PostgreSQL://a@b/c").backend(),
        "postgres"
    );
    assert_eq!(
        StateLocation::parse("data/app.db"),
        StateLocation::Sqlite("data/app.db".into())
    );
    assert_eq!(
        StateLocation::parse("postgres://u:secret@h/d").to_string(),
        "postgres://u:***@h/d"
    );
}
