//! Applied signals (`SqlStore::apply_signal`), on both backends: what a
//! signal does commits with the record of its `jti`, so the same `jti` —
//! replayed, redelivered after a crash, or raced by two replicas — is
//! applied exactly once; a polled signal stays unacknowledged until the
//! transmitter has been told, and a redelivery makes it so again.

use portcullis_control_plane::store::{EdgeStore, SessionStore, SignalRecord, SignalStep, SqlStore};
use portcullis_policy::UserRef;

use crate::fixtures::{actor, create, last_audit, login, sid, T0};

fn record<'a>(jti: &'a str, acked: bool) -> SignalRecord<'a> {
    SignalRecord {
        source: "ssf:okta",
        jti,
        event_types: "session-revoked",
        iat_ms: T0,
        target: "email:ada@corp.example",
        summary: "session-revoked → terminate_session via ssf:okta",
        audit_action: "signal.applied",
        acked,
    }
}

async fn a_jti_is_applied_once(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    create(&store, login(&sid(2), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    let step =
        [SignalStep::EndIdpSession { idp_issuer: "https://idp.corp.example".into(), sid: format!("idp-{}", sid(1)) }];
    let first = store.apply_signal(&record("j-1", true), &step, None, &actor(), T0 + 1).await.unwrap();
    assert!(!first.duplicate && first.sessions_ended == 1 && first.seq.is_some(), "{first:?}");
    assert!(!store.get_session(&sid(1)).await.unwrap().unwrap().is_active(T0 + 2));
    assert!(store.get_session(&sid(2)).await.unwrap().unwrap().is_active(T0 + 2), "another IdP login");
    assert_eq!(last_audit(&store, "signal.applied").await.actor, actor().name);
    // The same jti again, even asking for more, does nothing.
    let all = [SignalStep::EndUser(UserRef::email("ada@corp.example"))];
    let again = store.apply_signal(&record("j-1", true), &all, None, &actor(), T0 + 3).await.unwrap();
    assert!(again.duplicate && again.seq.is_none(), "{again:?}");
    assert!(store.get_session(&sid(2)).await.unwrap().unwrap().is_active(T0 + 4));
}

async fn racing_replicas_apply_a_jti_once(store: SqlStore) {
    create(&store, login(&sid(1), "sub-bob", "bob@corp.example", "wiki"), T0).await;
    let step = [SignalStep::Lock(UserRef::email("bob@corp.example"))];
    let runs = (0..8).map(|_| {
        let store = store.clone();
        let step = step.clone();
        tokio::spawn(async move { store.apply_signal(&record("race", true), &step, None, &actor(), T0 + 1).await })
    });
    let mut applied = 0;
    for run in runs {
        applied += usize::from(!run.await.unwrap().unwrap().duplicate);
    }
    assert_eq!(applied, 1, "exactly one of eight concurrent deliveries applies it");
}

async fn polled_signals_wait_for_their_ack(store: SqlStore) {
    store.apply_signal(&record("p-1", false), &[], None, &actor(), T0).await.unwrap();
    store.apply_signal(&record("p-2", false), &[], None, &actor(), T0).await.unwrap();
    assert_eq!(store.unacked_signals("ssf:okta", 10).await.unwrap(), ["p-1", "p-2"]);
    store.mark_signals_acked("ssf:okta", &["p-1".to_owned()]).await.unwrap();
    assert_eq!(store.unacked_signals("ssf:okta", 10).await.unwrap(), ["p-2"]);
    // Handed over again after its ack was lost: acknowledged again, not applied.
    let again = store.apply_signal(&record("p-1", false), &[], None, &actor(), T0 + 1).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(store.unacked_signals("ssf:okta", 10).await.unwrap(), ["p-1", "p-2"]);
    assert!(store.unacked_signals("ssf:other", 10).await.unwrap().is_empty(), "per source");
}

/// Response rules count a session's denials: only those the edges filed
/// under that session, not rows whose target merely ends in its id (an
/// identity string with a space, `eve@corp.example session:<ada's>`, would
/// otherwise load denials onto ada's session and end it on her first).
async fn a_session_counts_only_the_denials_filed_under_it(store: SqlStore) {
    create(&store, login(&sid(1), "sub-ada", "ada@corp.example", "wiki"), T0).await;
    let ada = format!("session:{}", sid(1));
    for _ in 0..2 {
        store.record_audit("access.denied", &ada, "route `wiki`: no rule allows", &actor(), T0).await.unwrap();
    }
    let forged = format!("user:eve@corp.example {ada}");
    for _ in 0..3 {
        store.record_audit("access.denied", &forged, "route `wiki`: no rule allows", &actor(), T0).await.unwrap();
    }
    store.record_audit("session.address_changed", &ada, "moved", &actor(), T0).await.unwrap();
    assert_eq!(store.denials_since(&sid(1), T0).await.unwrap(), 2);
    assert_eq!(store.denials_since(&sid(1), T0 + 1).await.unwrap(), 0, "older than the window");
}

store_tests!(
    a_jti_is_applied_once,
    racing_replicas_apply_a_jti_once,
    polled_signals_wait_for_their_ack,
    a_session_counts_only_the_denials_filed_under_it
);
