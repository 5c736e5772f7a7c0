//! The outbox: a termination's relying-party jobs commit with it, a claim
//! holds a fenced lease, an expired lease is claimed again (the same job id,
//! so the same idempotency key), and concurrent claimers never share a job.

use std::collections::HashSet;

use portcullis_control_plane::model::Millis;
use portcullis_control_plane::store::{
    Finish, JobState, OutboxStore, SessionStore, SqlStore, SsfStore, SsfStream, Subscription, UserStore,
    SSF_DEADLINE_MS, SSF_PUSH,
};
use portcullis_control_plane::termination::{Action, Termination};
use portcullis_policy::UserRef;

use crate::fixtures::{actor, create, login, sid, T0};

const DAY: Millis = 86_400_000;
const LEASE: Millis = 60_000;

fn subscribe(store: &SqlStore) {
    store.subscribe(vec![
        Subscription { sink: "okta".into(), actions: vec![Action::TerminateUser, Action::Lock], deadline_ms: DAY },
        Subscription { sink: "slack".into(), actions: vec![Action::TerminateUser], deadline_ms: DAY },
        Subscription { sink: "hook".into(), actions: vec![Action::TerminateSession], deadline_ms: DAY },
    ]);
}

store_tests!(
    jobs_commit_with_the_action,
    an_expired_lease_is_claimed_again_and_fences_the_old_holder,
    retries_and_failures_are_recorded_and_retried_by_hand,
    concurrent_claims_never_share_a_job,
    a_deleted_streams_running_delivery_records_nothing,
    a_poll_ack_reaches_only_its_own_streams_jobs,
    unclaimed_jobs_die_at_their_deadline,
);

async fn jobs_commit_with_the_action(store: SqlStore) {
    subscribe(&store);
    create(&store, login(&sid(1), "sub-bob", "Bob@Corp.example", "app"), T0).await;
    let (seq, _) = store.terminate_user(&UserRef::subject("sub-bob"), "stolen laptop", &actor(), T0 + 1).await.unwrap();
    let jobs = store.jobs_of_change(seq).await.unwrap();
    let sinks: Vec<&str> = jobs.iter().map(|j| j.sink.as_str()).collect();
    assert_eq!(sinks, ["okta", "slack"], "terminate_user reaches the sinks that follow it, only those");
    let event: Termination = serde_json::from_str(&jobs[0].event).unwrap();
    assert_eq!(
        event,
        Termination {
            action: Action::TerminateUser,
            user: "sub:sub-bob".into(),
            email: Some("bob@corp.example".into()),
            session_id: None,
            reason: "stolen laptop".into(),
            at_ms: T0 + 1,
        },
        "a subject-only termination carries the email the user logged in with"
    );
    assert!(jobs.iter().all(|j| j.state == JobState::Pending && j.attempts == 0 && j.deadline_ms == T0 + 1 + DAY));

    create(&store, login(&sid(2), "sub-eve", "eve@corp.example", "app"), T0).await;
    let seq = store.terminate_session(&sid(2), "odd", &actor(), T0 + 2).await.unwrap().unwrap();
    let jobs = store.jobs_of_change(seq).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let event: Termination = serde_json::from_str(&jobs[0].event).unwrap();
    assert_eq!((jobs[0].sink.as_str(), event.session_id.as_deref()), ("hook", Some(sid(2).as_str())));

    // A logout is not an admin's termination: nobody else hears of it.
    create(&store, login(&sid(3), "sub-eve", "eve@corp.example", "app"), T0 + 3).await;
    let seq = store.end_session_at_logout(&sid(3), "logout", &actor(), T0 + 4).await.unwrap().unwrap();
    assert!(store.jobs_of_change(seq).await.unwrap().is_empty());

    let seq = store.lock_user(&UserRef::email("eve@corp.example"), "hold", None, &actor(), T0 + 5).await.unwrap();
    let jobs = store.jobs_of_change(seq).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.sink.as_str()).collect::<Vec<_>>(), ["okta"]);
}

async fn an_expired_lease_is_claimed_again_and_fences_the_old_holder(store: SqlStore) {
    subscribe(&store);
    store.terminate_user(&UserRef::email("bob@corp.example"), "r", &actor(), T0).await.unwrap();
    let first = store.claim_jobs("okta", 10, LEASE, T0 + 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 1);
    assert!(store.claim_jobs("okta", 10, LEASE, T0 + 20).await.unwrap().is_empty(), "a held lease is not claimed");

    // The holder dies; its lease runs out; the job is claimed again, same id.
    let second = store.claim_jobs("okta", 10, LEASE, T0 + 10 + LEASE).await.unwrap();
    assert_eq!((second.len(), second[0].id.as_str(), second[0].attempts), (1, first[0].id.as_str(), 2));
    assert_ne!(first[0].lease_token, second[0].lease_token);

    let applied = Finish::Applied { detail: None };
    assert!(!store.finish_job(&first[0], &applied, T0 + LEASE + 30).await.unwrap(), "a lost lease records nothing");
    assert_eq!(store.get_job(&first[0].id).await.unwrap().unwrap().state, JobState::Pending);
    assert!(store.finish_job(&second[0], &applied, T0 + LEASE + 40).await.unwrap());
    let job = store.get_job(&first[0].id).await.unwrap().unwrap();
    assert_eq!((job.state, job.finished_ms, job.in_flight), (JobState::Applied, Some(T0 + LEASE + 40), false));
    assert!(store.claim_jobs("okta", 10, LEASE, T0 + 10 * LEASE).await.unwrap().is_empty(), "applied is final");
}

async fn retries_and_failures_are_recorded_and_retried_by_hand(store: SqlStore) {
    subscribe(&store);
    store.terminate_user(&UserRef::email("bob@corp.example"), "r", &actor(), T0).await.unwrap();
    let job = store.claim_jobs("slack", 1, LEASE, T0).await.unwrap().remove(0);
    let retry = Finish::Retry { error: "429 Too Many Requests".into(), at_ms: T0 + 30_000 };
    assert!(store.finish_job(&job, &retry, T0 + 5).await.unwrap());
    assert!(store.claim_jobs("slack", 1, LEASE, T0 + 29_999).await.unwrap().is_empty(), "not before its time");
    let job = store.claim_jobs("slack", 1, LEASE, T0 + 30_000).await.unwrap().remove(0);
    assert_eq!((job.attempts, job.last_error.as_deref()), (2, Some("429 Too Many Requests")));
    let failed = Finish::Failed { error: "invalid_auth".into() };
    assert!(store.finish_job(&job, &failed, T0 + 30_010).await.unwrap());
    assert!(store.claim_jobs("slack", 1, LEASE, T0 + DAY).await.unwrap().is_empty(), "failed waits for an admin");

    let audit = crate::fixtures::last_audit(&store, "relying_party.delivery").await;
    assert!(audit.reason.contains("attempt 2") && audit.reason.contains("failed: invalid_auth"), "{}", audit.reason);

    let later = T0 + 2 * DAY;
    let retried = store.retry_job(&job.id, &actor(), later).await.unwrap().expect("a failed job can be retried");
    assert_eq!((retried.state, retried.deadline_ms), (JobState::Pending, later + DAY));
    assert!(store.retry_job(&job.id, &actor(), later).await.unwrap().is_none(), "a pending job is not retried twice");
    assert_eq!(store.claim_jobs("slack", 1, LEASE, later).await.unwrap().len(), 1);
    assert_eq!(crate::fixtures::last_audit(&store, "relying_party.retry").await.actor, "token:ops");
}

async fn concurrent_claims_never_share_a_job(store: SqlStore) {
    subscribe(&store);
    for n in 0..40 {
        store.terminate_user(&UserRef::email(&format!("u{n}@corp.example")), "r", &actor(), T0 + n).await.unwrap();
    }
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = store.claim_jobs("okta", 3, LEASE, T0 + 100).await.unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs.into_iter().map(|j| j.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            total += 1;
            assert!(seen.insert(id.clone()), "job {id} was claimed twice");
        }
    }
    assert_eq!((total, seen.len()), (40, 40));
}

fn ssf_stream(id: &str, method: &str) -> SsfStream {
    SsfStream {
        id: id.into(),
        owner: "token:rx".into(),
        audience: "rx".into(),
        method: method.into(),
        endpoint_url: (method == "push").then(|| "https://rx.example/events".into()),
        authorization_sealed: None,
        events_requested: vec![],
        events_delivered: vec![],
        description: None,
        status: "enabled".into(),
        status_reason: None,
        created_ms: T0,
        updated_ms: T0,
    }
}

/// A push is in flight when its stream is deleted: the job is dead, and the
/// delivery's result, recorded afterwards, neither revives nor overwrites it.
async fn a_deleted_streams_running_delivery_records_nothing(store: SqlStore) {
    let stream = ssf_stream("s-push", "push");
    store.create_ssf_stream(&stream, &actor(), T0).await.unwrap();
    store.enqueue_ssf_verification(&stream, Some("x"), T0).await.unwrap().unwrap();
    let running = store.claim_jobs(SSF_PUSH, 1, LEASE, T0 + 1).await.unwrap().remove(0);
    assert!(store.delete_ssf_stream("s-push", &actor(), T0 + 2).await.unwrap());
    let retry = Finish::Retry { error: "503".into(), at_ms: T0 + 10 };
    assert!(!store.finish_job(&running, &retry, T0 + 3).await.unwrap(), "the deletion ended the lease");
    let job = store.get_job(&running.id).await.unwrap().unwrap();
    assert_eq!((job.state, job.in_flight), (JobState::Dead, false));
    assert_eq!(job.last_error.as_deref(), Some("the stream was deleted"));
    assert!(store.claim_jobs(SSF_PUSH, 1, LEASE, T0 + DAY).await.unwrap().is_empty());
}

/// A receiver acknowledges through its own poll stream: jtis of another
/// stream, of a push stream or of a relying party are left alone.
async fn a_poll_ack_reaches_only_its_own_streams_jobs(store: SqlStore) {
    subscribe(&store);
    let (mine, theirs, push) = (ssf_stream("mine", "poll"), ssf_stream("theirs", "poll"), ssf_stream("push", "push"));
    for s in [&mine, &theirs, &push] {
        store.create_ssf_stream(s, &actor(), T0).await.unwrap();
    }
    let their_jti = store.enqueue_ssf_verification(&theirs, None, T0).await.unwrap().unwrap();
    let push_jti = store.enqueue_ssf_verification(&push, None, T0 + 1).await.unwrap().unwrap();
    let my_jti = store.enqueue_ssf_verification(&mine, None, T0 + 2).await.unwrap().unwrap();
    let (seq, _) = store.terminate_user(&UserRef::email("bob@corp.example"), "r", &actor(), T0 + 3).await.unwrap();
    let okta = store.jobs_of_change(seq).await.unwrap().into_iter().find(|j| j.sink == "okta").unwrap().id;

    let acks = [their_jti.clone(), push_jti.clone(), okta.clone(), my_jti.clone()];
    let errors = [(their_jti.clone(), "x".to_owned()), (okta.clone(), "x".to_owned())];
    store.ssf_acknowledge("mine", &acks, &errors, T0 + 4).await.unwrap();
    for id in [&their_jti, &push_jti, &okta] {
        let job = store.get_job(id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts, job.last_error), (JobState::Pending, 0, None), "{}", job.sink);
    }
    assert_eq!(store.get_job(&my_jti).await.unwrap().unwrap().state, JobState::Applied);
}

/// A poll stream's events nobody acknowledges, and jobs no worker claims
/// (a relying party removed from the configuration), die at their deadline
/// instead of waiting for ever; a job a worker holds is left to it.
async fn unclaimed_jobs_die_at_their_deadline(store: SqlStore) {
    subscribe(&store);
    let abandoned = ssf_stream("abandoned", "poll");
    store.create_ssf_stream(&abandoned, &actor(), T0).await.unwrap();
    let jti = store.enqueue_ssf_verification(&abandoned, None, T0).await.unwrap().unwrap();
    let (seq, _) = store.terminate_user(&UserRef::email("bob@corp.example"), "r", &actor(), T0).await.unwrap();
    let jobs = store.jobs_of_change(seq).await.unwrap();
    let held = store.claim_jobs("okta", 1, 8 * DAY, T0 + DAY - 1).await.unwrap().remove(0);
    let removed = jobs.iter().find(|j| j.sink == "slack").unwrap().id.clone();

    assert_eq!(store.expire_jobs(T0 + DAY - 1).await.unwrap(), 0, "nothing before its deadline");
    assert_eq!(store.expire_jobs(T0 + DAY).await.unwrap(), 1, "the unclaimed relying-party job");
    let job = store.get_job(&removed).await.unwrap().unwrap();
    assert_eq!((job.state, job.finished_ms), (JobState::Dead, Some(T0 + DAY)));
    assert_eq!(job.last_error.as_deref(), Some("not delivered or acknowledged before its deadline"));
    assert_eq!(store.get_job(&held.id).await.unwrap().unwrap().state, JobState::Pending, "a held lease is respected");
    assert_eq!(store.get_job(&jti).await.unwrap().unwrap().state, JobState::Pending);

    assert_eq!(store.expire_jobs(T0 + SSF_DEADLINE_MS).await.unwrap(), 1, "the unacknowledged SET");
    assert_eq!(store.get_job(&jti).await.unwrap().unwrap().state, JobState::Dead);
    assert!(store.finish_job(&held, &Finish::Applied { detail: None }, T0 + SSF_DEADLINE_MS).await.unwrap());
}
