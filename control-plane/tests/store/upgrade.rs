//! Upgrading a database written before terminate-all counted milliseconds
//! (issue 13): a termination stored in whole seconds (`revoked_before_s`,
//! and its change-log delta in wire version 1) keeps revoking everything
//! issued in its second, and a login in that second after the upgrade
//! starts after it. On SQLite and on PostgreSQL.

use portcullis_control_plane::store::{ChangeStore, SqlStore};
use portcullis_policy::snapshot::UserState;
use portcullis_policy::wire::{encode, Message, WIRE_VERSION_SECONDS};
use portcullis_policy::{Change, Delta, UserRef};
use sqlx::any::AnyPoolOptions;

use crate::fixtures::{all_changes, create, login, sid, T0};
use crate::harness::scratch;

/// The second the old termination was recorded in.
const SECOND: i64 = T0 / 1000;

/// Creates the schema of before the upgrade (the first migration only) at
/// `url` and records there a terminate-all of ada in second [`SECOND`], the
/// way the old control plane did: the `users` row and the version-1 delta.
async fn old_database(url: &str, backend: &str) {
    let migrations = scratch::temp_dir("portcullis-upgrade", backend);
    std::fs::create_dir_all(&migrations).expect("migrations folder");
    let first = "0001_create_core_tables.sql";
    std::fs::copy(format!("../migrations/{backend}/{first}"), migrations.join(first)).expect("copy migration 0001");
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
    sqlx::migrate::Migrator::new(migrations.as_path()).await.expect("migrator").run(&pool).await.expect("0001");
    scratch::remove_dir(&migrations);
    sqlx::query("INSERT INTO users (user_key, revoked_before_s, updated_ms) VALUES ($1, $2, $3)")
        .bind("email:ada@corp.example")
        .bind(SECOND)
        .bind(T0)
        .execute(&pool)
        .await
        .expect("users row");
    let change = Change::TerminateUser { user: UserRef::email("ada@corp.example"), revoked_before_ms: SECOND };
    // Version 1 had the same shape as version 2, only in seconds.
    let mut delta = encode(&Message::Delta(Delta { seq: 1, change }));
    delta[..2].copy_from_slice(&WIRE_VERSION_SECONDS.to_le_bytes());
    sqlx::query("INSERT INTO change_log (seq, at_ms, delta) VALUES ($1, $2, $3)")
        .bind(1_i64)
        .bind(T0)
        .bind(delta)
        .execute(&pool)
        .await
        .expect("change-log row");
    pool.close().await;
}

/// Opens the old database with this build (which applies the new
/// migrations) and checks what the old termination means now.
async fn upgraded_keeps_revoking_the_whole_second(url: &str) {
    let store = SqlStore::connect(url).await.expect("open and migrate");
    let ada = UserRef::email("ada@corp.example");
    let last_ms = SECOND * 1000 + 999;
    let body = store.snapshot_body(T0).await.unwrap();
    assert_eq!(body.users, [(ada.clone(), UserState { lock: None, revoked_before_ms: Some(last_ms), groups: None })]);
    let changes = all_changes(&store).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].change, Change::TerminateUser { user: ada, revoked_before_ms: last_ms }, "read as ms");
    let session = create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), SECOND * 1000 + 500).await;
    assert_eq!(session.created_ms, last_ms + 1, "a login in that second starts after it");
    assert_eq!(store.head_seq().await.unwrap(), 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminate_all_in_seconds_survives_the_upgrade_on_sqlite() {
    let dir = scratch::temp_dir("portcullis-upgrade", "sqlite");
    std::fs::create_dir_all(&dir).expect("folder");
    let file = dir.join("control-plane.db");
    old_database(&format!("sqlite://{}?mode=rwc", file.display()), "sqlite").await;
    upgraded_keeps_revoking_the_whole_second(&format!("sqlite://{}", file.display())).await;
    scratch::remove_dir(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminate_all_in_seconds_survives_the_upgrade_on_postgres() {
    let test = "a_terminate_all_in_seconds_survives_the_upgrade_on_postgres";
    let Some(database) = scratch::scratch_postgres("portcullis_up", test).await else { return };
    old_database(&database.url, "postgres").await;
    let outcome = tokio::spawn({
        let url = database.url.clone();
        async move { upgraded_keeps_revoking_the_whole_second(&url).await }
    })
    .await;
    database.drop_database().await;
    scratch::finish(outcome);
}
