//! The frame codec and the edge-id rule; and every message of the edge channel: serialized, it is exactly the JSON the
//! other side expects (field names, `null`s, tags), and read back it is
//! equal; requests refuse unknown fields, answers tolerate them; optional
//! fields read their defaults when absent.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::*;
use crate::signed_frame::{StreamBinding, StreamNonce};

/// `message` serializes to `wire`, and both `wire` and its own text read back as `message`.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(message: &T, wire: Value) {
    assert_eq!(serde_json::to_value(message).unwrap(), wire, "the wire form of {message:?}");
    let text = serde_json::to_string(message).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), message, "read back from {text}");
    assert_eq!(&serde_json::from_value::<T>(wire).unwrap(), message);
}

/// `wire` with one more field, `extra`.
fn with_extra(mut wire: Value) -> Value {
    wire.as_object_mut().expect("an object").insert("extra".into(), json!(true));
    wire
}

/// Requests: an unknown field is refused, by name, as the control plane refuses it.
fn refuses_unknown_fields<T: DeserializeOwned + Debug>(wire: Value) {
    let error = serde_json::from_value::<T>(with_extra(wire)).expect_err("an unknown field is refused");
    assert!(error.to_string().contains("unknown field `extra`"), "{error}");
}

/// Answers: an unknown field (a newer control plane's) is ignored.
fn tolerates_unknown_fields<T: DeserializeOwned + PartialEq + Debug>(message: &T, wire: Value) {
    assert_eq!(&serde_json::from_value::<T>(with_extra(wire)).unwrap(), message);
}

#[test]
fn enroll_body() {
    let public_key = "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n";
    let body = EnrollBody { edge_id: "fra-1".into(), name: Some("Frankfurt 1".into()), public_key: public_key.into() };
    let wire = json!({ "edge_id": "fra-1", "name": "Frankfurt 1", "public_key": public_key });
    round_trip(&body, wire.clone());
    refuses_unknown_fields::<EnrollBody>(wire);
    let unnamed: EnrollBody = serde_json::from_value(json!({ "edge_id": "e", "public_key": "k" })).unwrap();
    assert_eq!(unnamed.name, None, "the name is optional");
}

#[test]
fn enroll_answer() {
    let answer = EnrollAnswer {
        edge_id: "fra-1".into(),
        name: "Frankfurt 1".into(),
        key_fingerprint: "ab".repeat(32),
        audience: EDGE_CHANNEL_AUDIENCE.into(),
        max_assertion_lifetime_s: MAX_ASSERTION_LIFETIME_S,
        fleet_key: "A".repeat(43),
    };
    let wire = json!({
        "edge_id": "fra-1",
        "name": "Frankfurt 1",
        "key_fingerprint": "ab".repeat(32),
        "audience": "portcullis-edge-channel",
        "max_assertion_lifetime_s": 60,
        "fleet_key": "A".repeat(43),
    });
    round_trip(&answer, wire.clone());
    tolerates_unknown_fields(&answer, wire);
}

#[test]
fn fleet_key_answer() {
    let answer = FleetKeyAnswer { fleet_key: "A".repeat(43) };
    round_trip(&answer, json!({ "fleet_key": "A".repeat(43) }));
    tolerates_unknown_fields(&answer, json!({ "fleet_key": "A".repeat(43) }));
}

#[test]
fn stream_query() {
    let nonce = StreamNonce([0xab; 16]);
    for since in [None, Some(7)] {
        let binding = StreamBinding { nonce, since };
        let path = stream_path(&binding);
        let (route, query) = path.split_once('?').expect("a query");
        assert_eq!(route, STREAM_PATH);
        let read: StreamQuery = serde_urlencoded::from_str(query).expect("axum's Query reads it");
        assert_eq!(read, StreamQuery::of(&binding));
        assert_eq!(read.nonce.as_deref().map(str::parse::<StreamNonce>), Some(Ok(nonce)));
        assert_eq!(serde_urlencoded::from_str::<StreamQuery>(&serde_urlencoded::to_string(&read).unwrap()), Ok(read));
    }
    assert_eq!(stream_path(&StreamBinding { nonce, since: Some(7) }), format!("{STREAM_PATH}?nonce={nonce}&since=7"));
    assert_eq!(serde_urlencoded::from_str::<StreamQuery>(""), Ok(StreamQuery::default()), "both optional");
    let error = serde_urlencoded::from_str::<StreamQuery>("nonce=00&since=1&extra=1").expect_err("refused");
    assert!(error.to_string().contains("unknown field `extra`"), "{error}");
}

#[test]
fn login_flow() {
    round_trip(&LoginFlow::Browser, json!("browser"));
    round_trip(&LoginFlow::Device, json!("device"));
    assert_eq!(LoginFlow::default(), LoginFlow::Browser);
    assert!(serde_json::from_value::<LoginFlow>(json!("implicit")).is_err());
}

#[test]
fn login_body() {
    let body = LoginBody {
        id_token: Some("eyJ.id.token".into()),
        nonce: None,
        flow: LoginFlow::Device,
        route: "admin".into(),
        source_address: "198.51.100.4".into(),
        user_agent: "curl/8".into(),
    };
    let wire = json!({
        "id_token": "eyJ.id.token",
        "nonce": null,
        "flow": "device",
        "route": "admin",
        "source_address": "198.51.100.4",
        "user_agent": "curl/8",
    });
    round_trip(&body, wire.clone());
    let browser = LoginBody { nonce: Some("n0nce".into()), flow: LoginFlow::Browser, ..body };
    let mut browser_wire = wire.clone();
    browser_wire["nonce"] = json!("n0nce");
    browser_wire["flow"] = json!("browser");
    round_trip(&browser, browser_wire);
    refuses_unknown_fields::<LoginBody>(wire);
    let least: LoginBody = serde_json::from_value(json!({ "route": "admin", "source_address": "::1" })).unwrap();
    assert_eq!((least.id_token, least.nonce, least.flow), (None, None, LoginFlow::Browser), "defaults");
    assert_eq!(least.user_agent, "");
}

#[test]
fn login_answer() {
    let answer = LoginAnswer {
        session_id: "0123abcd".into(),
        token: "eyJ.session.token".into(),
        expires_at: "2026-12-02T10:00:00Z".into(),
        replaced_sessions: vec!["4567ef01".into()],
    };
    let wire = json!({
        "session_id": "0123abcd",
        "token": "eyJ.session.token",
        "expires_at": "2026-12-02T10:00:00Z",
        "replaced_sessions": ["4567ef01"],
    });
    round_trip(&answer, wire.clone());
    tolerates_unknown_fields(&answer, wire);
}

#[test]
fn session_status() {
    let active = SessionStatus {
        id: "0123abcd".into(),
        state: "active".into(),
        email: "ada@corp.example".into(),
        expires_at: "2026-12-02T10:00:00Z".into(),
        ended_at: None,
        end_reason: None,
        ended_by: None,
    };
    let wire = json!({
        "id": "0123abcd",
        "state": "active",
        "email": "ada@corp.example",
        "expires_at": "2026-12-02T10:00:00Z",
        "ended_at": null,
        "end_reason": null,
        "ended_by": null,
    });
    round_trip(&active, wire.clone());
    tolerates_unknown_fields(&active, wire.clone());
    let ended = SessionStatus {
        state: "ended".into(),
        ended_at: Some("2026-12-02T09:00:00Z".into()),
        end_reason: Some("stolen laptop".into()),
        ended_by: Some("administrator".into()),
        ..active
    };
    let mut ended_wire = wire;
    ended_wire["state"] = json!("ended");
    ended_wire["ended_at"] = json!("2026-12-02T09:00:00Z");
    ended_wire["end_reason"] = json!("stolen laptop");
    ended_wire["ended_by"] = json!("administrator");
    round_trip(&ended, ended_wire);
}

#[test]
fn session_paths_fill_in_the_routes() {
    assert_eq!(session_path("0123abcd"), SESSION_ROUTE.replace("{id}", "0123abcd"));
    assert_eq!(session_logout_path("0123abcd"), SESSION_LOGOUT_ROUTE.replace("{id}", "0123abcd"));
    assert!(SESSION_ROUTE.starts_with(SESSIONS_PATH) && SESSION_LOGOUT_ROUTE.starts_with(SESSION_ROUTE));
}

#[test]
fn idp_logout_body() {
    let body = IdpLogoutBody {
        idp_issuer: "https://idp.corp.example".into(),
        idp_session_id: Some("sid-1".into()),
        subject: None,
    };
    let wire = json!({ "idp_issuer": "https://idp.corp.example", "idp_session_id": "sid-1", "subject": null });
    round_trip(&body, wire.clone());
    refuses_unknown_fields::<IdpLogoutBody>(wire);
    let bare: IdpLogoutBody = serde_json::from_value(json!({ "idp_issuer": "i", "subject": "s" })).unwrap();
    assert_eq!((bare.idp_session_id, bare.subject.as_deref()), (None, Some("s")), "absent is None");
}

#[test]
fn idp_logout_answer() {
    let answer = IdpLogoutAnswer { terminated: vec!["0123abcd".into(), "4567ef01".into()] };
    let wire = json!({ "terminated": ["0123abcd", "4567ef01"] });
    round_trip(&answer, wire.clone());
    tolerates_unknown_fields(&answer, wire);
}

#[test]
fn service_token_body() {
    let body = ServiceTokenBody { token: "pcst_secret".into() };
    let wire = json!({ "token": "pcst_secret" });
    round_trip(&body, wire.clone());
    refuses_unknown_fields::<ServiceTokenBody>(wire);
}

#[test]
fn service_identity() {
    let identity = ServiceIdentity {
        id: "tok_1".into(),
        name: "ci".into(),
        subject: "svc:ci".into(),
        groups: vec!["deploy".into()],
        issued_at: 1_700_000_000,
        issued_at_ms: Some(1_700_000_000_123),
        expires_at: None,
    };
    let wire = json!({
        "id": "tok_1",
        "name": "ci",
        "subject": "svc:ci",
        "groups": ["deploy"],
        "issued_at": 1_700_000_000,
        "issued_at_ms": 1_700_000_000_123_i64,
        "expires_at": null,
    });
    round_trip(&identity, wire.clone());
    tolerates_unknown_fields(&identity, wire.clone());
    // An older control plane's answer has no `issued_at_ms`; an unknown one is left out.
    let older = ServiceIdentity { issued_at_ms: None, expires_at: Some(1_800_000_000), ..identity };
    let mut older_wire = wire;
    older_wire.as_object_mut().unwrap().remove("issued_at_ms");
    older_wire["expires_at"] = json!(1_800_000_000);
    round_trip(&older, older_wire);
}

#[test]
fn error_answer() {
    let answer =
        ErrorAnswer { error: ErrorDetail { code: "user_locked".into(), message: "locked: offboarding".into() } };
    let wire = json!({ "error": { "code": "user_locked", "message": "locked: offboarding" } });
    round_trip(&answer, wire.clone());
    tolerates_unknown_fields(&answer, wire);
}

/// One event of every kind, and its wire form.
fn activity() -> Vec<(ActivityEvent, Value)> {
    vec![
        (
            ActivityEvent::Seen { session_id: "s1".into(), source_address: "10.0.0.1".into(), at_ms: 1_000 },
            json!({ "kind": "seen", "session_id": "s1", "source_address": "10.0.0.1", "at_ms": 1_000 }),
        ),
        (
            ActivityEvent::Connections { session_id: "s1".into(), delta: -2 },
            json!({ "kind": "connections", "session_id": "s1", "delta": -2 }),
        ),
        (
            ActivityEvent::LiveConnections { session_id: "s1".into(), connections: 3 },
            json!({ "kind": "live_connections", "session_id": "s1", "connections": 3 }),
        ),
        (
            ActivityEvent::AddressChanged {
                session_id: "s1".into(),
                from: "10.0.0.1".into(),
                to: "198.51.100.4".into(),
                denied: true,
                at_ms: 2_000,
            },
            json!({
                "kind": "address_changed", "session_id": "s1", "from": "10.0.0.1", "to": "198.51.100.4",
                "denied": true, "at_ms": 2_000,
            }),
        ),
        (
            ActivityEvent::FlowOpened {
                session_id: None,
                user: "ci@corp.example".into(),
                route: "db".into(),
                target: "db.internal:5432".into(),
                source_address: "10.0.0.2".into(),
                flows: 3,
                first_at_ms: Some(2_500),
                at_ms: 3_000,
            },
            json!({
                "kind": "flow_opened", "session_id": null, "user": "ci@corp.example", "route": "db",
                "target": "db.internal:5432", "source_address": "10.0.0.2", "flows": 3, "first_at_ms": 2_500,
                "at_ms": 3_000,
            }),
        ),
        (
            ActivityEvent::FlowClosed {
                session_id: Some("s1".into()),
                user: "ada@corp.example".into(),
                route: "ssh".into(),
                target: "ssh.internal:22".into(),
                source_address: "10.0.0.1".into(),
                bytes_up: 10,
                bytes_down: 20,
                opened_at_ms: 1_000,
                flows: 2,
                first_at_ms: Some(4_000),
                duration_ms: 3_500,
                shortest_ms: Some(3_000),
                ended_by: "access_ended".into(),
                at_ms: 4_500,
            },
            json!({
                "kind": "flow_closed", "session_id": "s1", "user": "ada@corp.example", "route": "ssh",
                "target": "ssh.internal:22", "source_address": "10.0.0.1", "bytes_up": 10, "bytes_down": 20,
                "opened_at_ms": 1_000, "flows": 2, "first_at_ms": 4_000, "duration_ms": 3_500, "shortest_ms": 3_000,
                "ended_by": "access_ended", "at_ms": 4_500,
            }),
        ),
        (
            ActivityEvent::Denied {
                user: "eve@corp.example".into(),
                session_id: None,
                route: "admin".into(),
                reason: "no rule allows".into(),
                source_address: "203.0.113.9".into(),
                at_ms: 5_000,
                count: 40,
                first_at_ms: Some(4_000),
                reference: None,
            },
            json!({
                "kind": "denied", "user": "eve@corp.example", "session_id": null, "route": "admin",
                "reason": "no rule allows", "source_address": "203.0.113.9", "at_ms": 5_000, "count": 40,
                "first_at_ms": 4_000,
            }),
        ),
        (
            ActivityEvent::Denied {
                user: "eve@corp.example".into(),
                session_id: Some("s1".into()),
                route: "admin".into(),
                reason: "the user is locked: INC-1".into(),
                source_address: "203.0.113.9".into(),
                at_ms: 5_000,
                count: 1,
                first_at_ms: None,
                reference: Some("K7Q2-M9XD-4RTA".parse().expect("reference")),
            },
            json!({
                "kind": "denied", "user": "eve@corp.example", "session_id": "s1", "route": "admin",
                "reason": "the user is locked: INC-1", "source_address": "203.0.113.9", "at_ms": 5_000,
                "count": 1, "first_at_ms": null, "reference": "K7Q2-M9XD-4RTA",
            }),
        ),
        (
            ActivityEvent::ConnectionsClosed {
                session_id: Some("s1".into()),
                user: "bob@corp.example".into(),
                route: "chat".into(),
                source_address: "10.0.0.2".into(),
                reason: "session_terminated".into(),
                connections: 3,
                first_at_ms: 6_000,
                at_ms: 6_001,
            },
            json!({
                "kind": "connections_closed", "session_id": "s1", "user": "bob@corp.example", "route": "chat",
                "source_address": "10.0.0.2", "reason": "session_terminated", "connections": 3,
                "first_at_ms": 6_000, "at_ms": 6_001,
            }),
        ),
    ]
}

#[test]
fn activity_events() {
    for (event, wire) in activity() {
        assert_eq!(wire["kind"], event.kind(), "kind() says what the tag says");
        round_trip(&event, wire.clone());
        refuses_unknown_fields::<ActivityEvent>(wire);
    }
    let unknown = json!({ "kind": "teleported", "session_id": "s1" });
    assert!(serde_json::from_value::<ActivityEvent>(unknown).is_err(), "an unknown kind is refused");
}

#[test]
fn flow_counts_default_to_one() {
    let opened = json!({
        "kind": "flow_opened", "session_id": null, "user": "", "route": "db", "target": "db:5432",
        "source_address": "10.0.0.2", "at_ms": 3_000,
    });
    let ActivityEvent::FlowOpened { flows, first_at_ms, .. } = serde_json::from_value(opened).unwrap() else {
        panic!("a flow_opened event")
    };
    assert_eq!((flows, first_at_ms), (1, None));
}

#[test]
fn closed_connections() {
    let closed = ClosedConnections { seq: 42, connections: 3 };
    let wire = json!({ "seq": 42, "connections": 3 });
    round_trip(&closed, wire.clone());
    refuses_unknown_fields::<ClosedConnections>(wire);
}

#[test]
fn report_body() {
    let (events, wires): (Vec<_>, Vec<_>) = activity().into_iter().unzip();
    let report = ReportBody {
        applied_seq: 42,
        live_connections: 7,
        closed: vec![ClosedConnections { seq: 42, connections: 3 }],
        activity: events,
        connections_complete: true,
    };
    let wire = json!({
        "applied_seq": 42,
        "live_connections": 7,
        "closed": [{ "seq": 42, "connections": 3 }],
        "activity": wires,
        "connections_complete": true,
    });
    round_trip(&report, wire.clone());
    refuses_unknown_fields::<ReportBody>(wire);
    let least: ReportBody = serde_json::from_value(json!({ "applied_seq": 1 })).unwrap();
    let nothing = ReportBody {
        applied_seq: 1,
        live_connections: 0,
        closed: vec![],
        activity: vec![],
        connections_complete: false,
    };
    assert_eq!(least, nothing);
}

#[test]
fn a_frame_round_trips_and_partial_frames_wait() {
    let payload = b"signed frame bytes";
    let mut wire = frame_header(payload.len()).to_vec();
    wire.extend_from_slice(payload);
    wire.extend_from_slice(&frame_header(0));
    assert_eq!(next_frame(&wire), Ok(Some(&payload[..])));
    assert_eq!(next_frame(&wire[payload.len() + FRAME_HEADER_BYTES..]), Ok(Some(&b""[..])));
    assert_eq!(next_frame(&wire[..FRAME_HEADER_BYTES + 3]), Ok(None), "a frame in flight");
    assert_eq!(next_frame(&wire[..3]), Ok(None), "a header in flight");
    assert_eq!(next_frame(&[0xff; 4]), Err(FrameTooLarge(u32::MAX as usize)));
}

#[test]
fn edge_ids() {
    for good in ["edge-1", "eu_west.3", &"a".repeat(64)] {
        assert!(valid_edge_id(good), "{good}");
    }
    for bad in ["", "edge 1", "edge/1", "édge", &"a".repeat(65), "e\0"] {
        assert!(!valid_edge_id(bad), "{bad:?}");
    }
}
