//! Admin state: user locks, policy versions, API tokens and signing keys,
//! each checked in its tables, its change (if it makes one) and the snapshot.

use portcullis_control_plane::model::{rfc3339, Actor, ApiTokenRecord, Millis, SigningKeyRecord};
use portcullis_control_plane::store::{
    ChangeStore, PolicyStore, SessionStore, SqlStore, StoreError, TokenStore, UserStore,
};
use portcullis_policy::snapshot::{KeyAlgorithm, Lock, PublicKey, UserState};
use portcullis_policy::{Change, PolicySource, TokenId, UserRef};

use crate::fixtures::{actor, audit_all, ceil_s, change_at, last_audit, HOUR, POLICY_A, POLICY_B, T0};

async fn users(store: &SqlStore, now: Millis) -> Vec<(UserRef, UserState)> {
    let mut users = store.snapshot_body(now).await.unwrap().users;
    users.sort_by(|a, b| a.0.cmp(&b.0));
    users
}

async fn lock_and_unlock(store: SqlStore) {
    let eve = UserRef::email("eve@corp.example");
    let until = T0 / 1000 + 3600;
    let seq = store.lock_user(&UserRef::email("Eve@Corp.Example"), "investigation", Some(until), &actor(), T0).await;
    assert_eq!(seq.unwrap(), 1);
    let lock = Lock { until: Some(until), reason: "investigation".into() };
    assert_eq!(change_at(&store, 1).await, Change::LockUser { user: eve.clone(), lock: lock.clone() });
    assert_eq!(
        users(&store, T0).await,
        [(eve.clone(), UserState { lock: Some(lock), revoked_before_ms: None, groups: None })]
    );
    let entry = last_audit(&store, "user.lock").await;
    assert_eq!(
        (entry.target.as_str(), entry.reason.as_str(), entry.seq),
        ("email:eve@corp.example", "investigation", Some(1))
    );

    // Locking again replaces the lock.
    store.lock_user(&eve, "for good", None, &actor(), T0 + 1000).await.unwrap();
    let forever = Lock { until: None, reason: "for good".into() };
    assert_eq!(
        users(&store, T0).await,
        [(eve.clone(), UserState { lock: Some(forever), revoked_before_ms: None, groups: None })]
    );

    let (seq, ended) = store.unlock_user(&eve, "cleared", false, &actor(), T0 + 2000).await.unwrap();
    assert_eq!((seq, ended.len()), (3, 0));
    assert_eq!(change_at(&store, 3).await, Change::UnlockUser { user: eve.clone() });
    assert_eq!(users(&store, T0 + 2000).await, [], "an unlocked user without revocations leaves the snapshot");
    assert_eq!(last_audit(&store, "user.unlock").await.seq, Some(3));

    // Unlocking keeps an earlier terminate-all.
    let sub = UserRef::subject("sub-mallory");
    store.lock_user(&sub, "x", None, &actor(), T0 + 3000).await.unwrap();
    store.terminate_user(&sub, "x", &actor(), T0 + 4000).await.unwrap();
    let locked = users(&store, T0 + 4000).await;
    assert_eq!(locked.len(), 1);
    assert!(locked[0].1.lock.is_some() && locked[0].1.revoked_before_ms == Some(T0 + 4000));
    store.unlock_user(&sub, "y", false, &actor(), T0 + 5000).await.unwrap();
    let state = UserState { lock: None, revoked_before_ms: Some(T0 + 4000), groups: None };
    assert_eq!(users(&store, T0 + 5000).await, [(sub.clone(), state)]);
    assert_eq!(store.head_seq().await.unwrap(), 6);

    // By default an unlock is a terminate-all first, then the unlock, in one
    // transaction: edges end the sessions before they lift the lock.
    store.lock_user(&sub, "z", None, &actor(), T0 + 6000).await.unwrap();
    let (seq, _) = store.unlock_user(&sub, "w", true, &actor(), T0 + 7000).await.unwrap();
    assert_eq!(seq, 9);
    let terminate = Change::TerminateUser { user: sub.clone(), revoked_before_ms: T0 + 7000 };
    assert_eq!(change_at(&store, 8).await, terminate);
    assert_eq!(change_at(&store, 9).await, Change::UnlockUser { user: sub.clone() });
    let state = UserState { lock: None, revoked_before_ms: Some(T0 + 7000), groups: None };
    assert_eq!(users(&store, T0 + 7000).await, [(sub, state)]);
}

fn alice() -> Actor {
    Actor { name: "user:alice@corp.example".into(), source_address: "192.0.2.44".into() }
}

async fn policy_versions(store: SqlStore) {
    assert_eq!(store.current_policy().await.unwrap(), None);
    assert_eq!(store.policy_history(10).await.unwrap(), []);
    assert_eq!(store.put_policy(POLICY_A, "first", &actor(), T0).await.unwrap(), (1, 1));
    assert_eq!(store.put_policy(POLICY_B, "company", &alice(), T0 + 1000).await.unwrap(), (2, 2));
    assert_eq!(store.put_policy(POLICY_A, "roll back to v1", &actor(), T0 + 2000).await.unwrap(), (3, 3));

    let current = store.current_policy().await.unwrap().unwrap();
    assert_eq!((current.version, current.document.as_str()), (3, POLICY_A));
    assert_eq!((current.author.as_str(), current.message.as_str()), ("token:ops", "roll back to v1"));
    assert_eq!(current.created_at, rfc3339(T0 + 2000));
    let history = store.policy_history(10).await.unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2, 1], "newest first");
    assert_eq!(history[0], current);
    assert_eq!(store.policy_history(2).await.unwrap(), history[..2]);
    let v2 = store.policy_version(2).await.unwrap().unwrap();
    assert_eq!(
        (v2.document.as_str(), v2.author.as_str(), v2.message.as_str()),
        (POLICY_B, "user:alice@corp.example", "company")
    );
    assert_eq!(store.policy_version(4).await.unwrap(), None);
    assert_eq!(store.policy_version(0).await.unwrap(), None);

    let source = |n: i64, text: &str| PolicySource { name: format!("policy v{n}"), text: text.into() };
    assert_eq!(change_at(&store, 2).await, Change::ReplacePolicy { policy: source(2, POLICY_B) });
    assert_eq!(store.snapshot_body(T0 + 2000).await.unwrap().policy, source(3, POLICY_A));
    let entry = last_audit(&store, "policy.apply").await;
    assert_eq!((entry.target.as_str(), entry.reason.as_str(), entry.seq), ("policy:v3", "roll back to v1", Some(3)));
}

fn token(id: &str, kind: &str, created_ms: Millis, expires_ms: Option<Millis>) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        kind: kind.into(),
        name: format!("{id} name"),
        token_hash: format!("{:0>64}", id.len().to_string() + id),
        scopes: if kind == "admin" { vec!["sessions:read".into(), "sessions:write".into()] } else { vec![] },
        subject: if kind == "service" { format!("svc:{id}") } else { String::new() },
        groups: if kind == "service" { vec!["machines".into()] } else { vec![] },
        created_ms,
        expires_ms,
        revoked_ms: None,
        last_used_ms: None,
        created_by: "token:bootstrap".into(),
    }
}

async fn api_tokens(store: SqlStore) {
    let expiry = T0 + 30 * 24 * HOUR + 500;
    let tokens = [
        token("adm-1", "admin", T0, None),
        token("svc-1", "service", T0, Some(expiry)),
        token("svc-2", "service", T0 + 1000, None),
        token("adm-2", "admin", T0 + 1000, Some(expiry)),
    ];
    for t in &tokens {
        store.insert_api_token(t, &actor(), t.created_ms).await.unwrap();
    }
    for t in &tokens {
        assert_eq!(store.api_token_by_hash(&t.token_hash).await.unwrap().as_ref(), Some(t));
    }
    assert_eq!(store.api_token_by_hash("0".repeat(64).as_str()).await.unwrap(), None);
    let listed = |kind: &'static str| {
        let store = store.clone();
        async move { store.list_api_tokens(kind).await.unwrap().into_iter().map(|t| t.id).collect::<Vec<_>>() }
    };
    assert_eq!(listed("admin").await, ["adm-2", "adm-1"], "newest first");
    assert_eq!(listed("service").await, ["svc-2", "svc-1"]);
    assert_eq!(listed("other").await, Vec::<String>::new());
    assert_eq!(last_audit(&store, "service_token.create").await.target, "token:svc-2");

    // A second token with the same hash is refused, and leaves no audit row.
    let audit_before = audit_all(&store).await.len();
    let clash = ApiTokenRecord { id: "adm-3".into(), ..tokens[0].clone() };
    assert!(matches!(store.insert_api_token(&clash, &actor(), T0).await, Err(StoreError::Database(_))));
    assert_eq!(audit_all(&store).await.len(), audit_before);

    let now = T0 + HOUR;
    assert_eq!(store.revoke_api_token("svc-1", &actor(), now).await.unwrap(), Some(1));
    let expected = Change::RevokeToken { token: TokenId::new("svc-1"), expires_at: ceil_s(expiry) };
    assert_eq!(change_at(&store, 1).await, expected);
    let revoked = store.api_token_by_hash(&tokens[1].token_hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(now));
    assert_eq!(store.revoke_api_token("svc-1", &actor(), now + 1).await.unwrap(), None, "already revoked");
    assert_eq!(store.api_token_by_hash(&tokens[1].token_hash).await.unwrap().unwrap().revoked_ms, Some(now));

    assert_eq!(store.revoke_api_token("adm-1", &actor(), now).await.unwrap(), None, "admin tokens make no change");
    assert_eq!(store.head_seq().await.unwrap(), 1);
    assert_eq!(store.api_token_by_hash(&tokens[0].token_hash).await.unwrap().unwrap().revoked_ms, Some(now));
    let entry = last_audit(&store, "admin_token.revoke").await;
    assert_eq!((entry.target.as_str(), entry.seq), ("token:adm-1", None));

    assert_eq!(store.revoke_api_token("svc-2", &actor(), now).await.unwrap(), Some(2));
    let forever = Change::RevokeToken { token: TokenId::new("svc-2"), expires_at: i64::MAX };
    assert_eq!(change_at(&store, 2).await, forever, "a token without expiry is revoked forever");
    assert_eq!(last_audit(&store, "service_token.revoke").await.seq, Some(2));
    assert!(matches!(store.revoke_api_token("nope", &actor(), now).await, Err(StoreError::NotFound)));

    let mut revoked = store.snapshot_body(now).await.unwrap().revoked_tokens;
    revoked.sort();
    assert_eq!(revoked, [(TokenId::new("svc-1"), ceil_s(expiry)), (TokenId::new("svc-2"), i64::MAX)]);
    let after_expiry = store.snapshot_body(expiry).await.unwrap().revoked_tokens;
    assert_eq!(after_expiry, [(TokenId::new("svc-2"), i64::MAX)], "expired tokens need no revocation");
}

fn key(kid: &str, created_ms: Millis) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        private_pem: format!("-----BEGIN PRIVATE KEY-----\n{kid}\n-----END PRIVATE KEY-----\n"),
        x: format!("x-{kid}"),
        y: Some(format!("y-{kid}")),
        created_ms,
        retired_ms: None,
        revoked_ms: None,
    }
}

fn public(record: &SigningKeyRecord) -> PublicKey {
    PublicKey { kid: record.kid.clone(), alg: KeyAlgorithm::ES256, x: record.x.clone(), y: record.y.clone() }
}

async fn signing_keys(store: SqlStore) {
    let (k1, k2) = (key("k1", T0), key("k2", T0 + HOUR));
    assert_eq!(store.signing_keys().await.unwrap(), []);
    assert_eq!(store.add_signing_key(&k1, &Actor::system(), T0).await.unwrap(), 1);
    assert_eq!(store.signing_keys().await.unwrap(), std::slice::from_ref(&k1));
    assert_eq!(change_at(&store, 1).await, Change::RotateKeys { keys: vec![public(&k1)] });

    let now = T0 + HOUR;
    assert_eq!(store.add_signing_key(&k2, &actor(), now).await.unwrap(), 2);
    let retired = SigningKeyRecord { retired_ms: Some(now), ..k1.clone() };
    assert_eq!(store.signing_keys().await.unwrap(), [retired, k2.clone()], "oldest first; the previous key retired");
    let both = vec![public(&k1), public(&k2)];
    assert_eq!(change_at(&store, 2).await, Change::RotateKeys { keys: both.clone() }, "retired keys still verify");
    assert_eq!(store.snapshot_body(now).await.unwrap().signing_keys, both);
    let much_later = now + 8 * 24 * HOUR;
    assert_eq!(store.snapshot_body(much_later).await.unwrap().signing_keys, [public(&k2)], "until the grace ends");
    let entry = last_audit(&store, "signing_key.rotate").await;
    assert_eq!((entry.target.as_str(), entry.seq), ("key:k2", Some(2)));

    // A third key retires only the current one.
    let k3 = key("k3", now + 1000);
    store.add_signing_key(&k3, &actor(), now + 1000).await.unwrap();
    let retired: Vec<_> = store.signing_keys().await.unwrap().iter().map(|k| k.retired_ms).collect();
    assert_eq!(retired, [Some(now), Some(now + 1000), None]);
}

async fn signing_key_revocation(store: SqlStore) {
    let (k1, k2, k3) = (key("k1", T0), key("k2", T0 + HOUR), key("k3", T0 + 2 * HOUR));
    store.add_signing_key(&k1, &actor(), T0).await.unwrap();
    store.add_signing_key(&k2, &actor(), T0 + HOUR).await.unwrap();
    let now = T0 + 2 * HOUR;
    // The retired key k1 leaked: withdrawn at once, not after the week of grace.
    let seq = store.revoke_signing_key("k1", None, "k1 leaked", &actor(), now).await.unwrap().expect("revoked");
    assert_eq!(change_at(&store, seq).await, Change::RotateKeys { keys: vec![public(&k2)] });
    assert_eq!(store.snapshot_body(now).await.unwrap().signing_keys, [public(&k2)]);
    let entry = last_audit(&store, "signing_key.revoke").await;
    assert_eq!((entry.target.as_str(), entry.reason.as_str(), entry.seq), ("key:k1", "k1 leaked", Some(seq as i64)));
    assert_eq!(store.revoke_signing_key("k1", None, "again", &actor(), now).await.unwrap(), None, "already revoked");
    assert_eq!(store.revoke_signing_key("nope", None, "unknown", &actor(), now).await.unwrap(), None);

    // The current key needs a replacement, made current in the same change.
    assert!(store.revoke_signing_key("k2", None, "k2 leaked", &actor(), now).await.is_err());
    assert_eq!(store.snapshot_body(now).await.unwrap().signing_keys, [public(&k2)], "nothing changed");
    let seq = store.revoke_signing_key("k2", Some(&k3), "k2 leaked", &actor(), now).await.unwrap().unwrap();
    assert_eq!(change_at(&store, seq).await, Change::RotateKeys { keys: vec![public(&k3)] });
    let keys = store.signing_keys().await.unwrap();
    let states: Vec<_> = keys.iter().map(|k| (k.kid.as_str(), k.retired_ms.is_some(), k.revoked_ms)).collect();
    assert_eq!(states, [("k1", true, Some(now)), ("k2", true, Some(now)), ("k3", false, None)]);
}

store_tests!(lock_and_unlock, policy_versions, api_tokens, signing_keys, signing_key_revocation);

/// Re-authentication after a lock ran out (issue 15): the lock's end counts
/// like an unlock, so a login riding on a sign-in from before it is refused.
async fn a_lock_that_ran_out_demands_a_new_sign_in(store: SqlStore) {
    let until_s = T0 / 1000 + 600;
    store.lock_user(&UserRef::email("ada@corp.example"), "x", Some(until_s), &actor(), T0).await.unwrap();
    let after = until_s * 1000 + 1;
    let mut stale = crate::fixtures::login(&crate::fixtures::sid(1), "sub-ada", "ada@corp.example", "wiki");
    stale.auth_time_s = until_s - 1;
    let refused = store.create_session(stale, None, &actor(), after).await.map(|_| ()).unwrap_err();
    assert!(matches!(refused, StoreError::ReauthenticationRequired), "{refused}");
    let mut fresh = crate::fixtures::login(&crate::fixtures::sid(2), "sub-ada", "ada@corp.example", "wiki");
    fresh.auth_time_s = until_s;
    store.create_session(fresh, None, &actor(), after).await.expect("a sign-in after the lock ended");
}

store_tests!(a_lock_that_ran_out_demands_a_new_sign_in);
