//! The per-user trail on a database written before audit rows named their
//! user (migration 0015): rows about a session or an email are found by the
//! user's email, subject and session afterwards. On SQLite and PostgreSQL.

use portcullis_control_plane::store::{AuditFilter, EdgeStore, SqlStore};
use sqlx::any::AnyPoolOptions;

use crate::fixtures::T0;
use crate::harness::scratch;

/// The schema up to migration 0014, with a session and audit rows as the
/// control plane wrote them then.
async fn old_database(url: &str, backend: &str) {
    let migrations = scratch::temp_dir("portcullis-trail", backend);
    std::fs::create_dir_all(&migrations).expect("migrations folder");
    for entry in std::fs::read_dir(format!("../migrations/{backend}")).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0015" {
            std::fs::copy(&path, migrations.join(&name)).expect("copy a migration");
        }
    }
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.expect("connect");
    sqlx::migrate::Migrator::new(migrations.as_path()).await.expect("migrator").run(&pool).await.expect("0001-0014");
    scratch::remove_dir(&migrations);
    sqlx::query(
        "INSERT INTO sessions (id, subject, email, groups_json, idp_issuer, route, created_ms, last_seen_ms, \
         expires_ms, auth_time_s, source_addresses_json, user_agent, edges_json, live_connections) \
         VALUES ('s1', 'sub-ada', 'Ada@Corp.example', '[]', 'https://idp', 'wiki', $1, $1, $2, 1, '[]', 'ua', '[]', 0)",
    )
    .bind(T0)
    .bind(T0 + 3_600_000)
    .execute(&pool)
    .await
    .expect("session row");
    for (action, target) in [
        ("session.create", "session:s1"),
        ("session.terminate", "session:s1"),
        ("user.lock", "email:ADA@corp.example"),
        ("policy.apply", "policy:v1"),
    ] {
        sqlx::query("INSERT INTO audit_log (at_ms, actor, action, target) VALUES ($1, 'token:ops', $2, $3)")
            .bind(T0)
            .bind(action)
            .bind(target)
            .execute(&pool)
            .await
            .expect("audit row");
    }
    pool.close().await;
}

async fn upgraded_rows_name_their_user(url: &str) {
    let store = SqlStore::connect(url).await.expect("open and migrate");
    let actions = |filter: AuditFilter| {
        let store = store.clone();
        async move {
            let entries = store.audit(&AuditFilter { limit: 100, ..filter }).await.expect("audit");
            entries.into_iter().rev().map(|e| e.action).collect::<Vec<_>>()
        }
    };
    let by_email = actions(AuditFilter { user: Some("ada@corp.EXAMPLE".into()), ..AuditFilter::default() }).await;
    assert_eq!(by_email, ["session.create", "session.terminate", "user.lock"]);
    let by_subject = actions(AuditFilter { user: Some("sub-ada".into()), ..AuditFilter::default() }).await;
    assert_eq!(by_subject, ["session.create", "session.terminate"]);
    let by_session = actions(AuditFilter { session: Some("s1".into()), ..AuditFilter::default() }).await;
    assert_eq!(by_session, ["session.create", "session.terminate"]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_audit_rows_join_the_trail_on_sqlite() {
    let dir = scratch::temp_dir("portcullis-trail-db", "sqlite");
    std::fs::create_dir_all(&dir).expect("folder");
    let file = dir.join("control-plane.db");
    old_database(&format!("sqlite://{}?mode=rwc", file.display()), "sqlite").await;
    upgraded_rows_name_their_user(&format!("sqlite://{}", file.display())).await;
    scratch::remove_dir(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_audit_rows_join_the_trail_on_postgres() {
    let test = "old_audit_rows_join_the_trail_on_postgres";
    let Some(database) = scratch::scratch_postgres("portcullis_trail", test).await else { return };
    old_database(&database.url, "postgres").await;
    let outcome = tokio::spawn({
        let url = database.url.clone();
        async move { upgraded_rows_name_their_user(&url).await }
    })
    .await;
    database.drop_database().await;
    scratch::finish(outcome);
}
