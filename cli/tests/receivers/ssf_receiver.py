#!/usr/bin/env python3
"""An OpenID Shared Signals receiver, written from the specifications
(SSF 1.0, RFC 8417 SETs, RFC 8935 push, RFC 8936 poll, CAEP 1.0, RISC 1.0)
with PyJWT, independently of Portcullis's Rust code. It discovers the
transmitter, makes a push stream and a poll stream, asks for verification
events, has an admin terminate a user and one of her sessions, and checks
every SET it receives: signature against the published JWKS, `typ`, `alg`,
`iss`, `aud`, `iat`, `jti`, no `exp`/`sub`, `sub_id` formats, event types.

usage: ssf_receiver.py BASE_URL RECEIVER_TOKEN ADMIN_TOKEN REPORT_FILE
Exits 0 when every check passed; the report (JSON) lists what it received.
"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

BASE, TOKEN, ADMIN, REPORT = sys.argv[1:5]
CAEP_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
RISC_REVOKED = "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
PUSH, POLL = "urn:ietf:rfc:8935", "urn:ietf:rfc:8936"
PUSH_SECRET = "Bearer rx-push-secret-0c5e"
failures, received, pushed = [], [], []
lock = threading.Condition()


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def call(method, path, body=None, token=TOKEN, expect=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    if expect is not None:
        check(status == expect, f"{method} {path}: expected {expect}, got {status} {text}")
    return status, (json.loads(text) if text else None)


config = json.load(urllib.request.urlopen(BASE + "/.well-known/ssf-configuration"))
check(config["issuer"] == BASE, f"issuer {config['issuer']} is not {BASE}")
check(set(config["delivery_methods_supported"]) == {PUSH, POLL}, f"delivery methods {config}")
for key in ("jwks_uri", "configuration_endpoint", "status_endpoint", "verification_endpoint"):
    check(config.get(key, "").startswith(BASE), f"{key} in {config}")
jwks = jwt.PyJWKClient(config["jwks_uri"])


def verify_set(token, audience, how):
    """Checks one SET as RFC 8417 and SSF 1.0 say; returns its claims."""
    header = jwt.get_unverified_header(token)
    check(header.get("typ") == "secevent+jwt", f"{how}: typ {header}")
    check(header.get("alg") == "ES256", f"{how}: alg {header}")
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=audience, issuer=config["issuer"],
                        options={"require": ["iss", "iat", "jti", "aud"], "verify_exp": False})
    check("exp" not in claims and "sub" not in claims, f"{how}: exp or sub in {claims}")
    check(abs(time.time() - claims["iat"]) < 120, f"{how}: iat {claims['iat']}")
    check(len(claims["events"]) == 1, f"{how}: one event per SET: {claims['events']}")
    check("format" in claims["sub_id"], f"{how}: sub_id {claims['sub_id']}")
    received.append({"how": how, "claims": claims})
    return claims


class Push(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        check(self.headers.get("Content-Type") == "application/secevent+jwt", f"push content type {self.headers}")
        if self.headers.get("Authorization") != PUSH_SECRET:
            self.send_response(400)
            payload = json.dumps({"err": "authentication_failed", "description": "wrong header"}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            failures.append("a push without the stream's Authorization header")
            return
        with lock:
            pushed.append(body)
            lock.notify_all()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_pushed(count, seconds=20):
    with lock:
        lock.wait_for(lambda: len(pushed) >= count, timeout=seconds)
        return list(pushed)


server = ThreadingHTTPServer(("127.0.0.1", 0), Push)
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = f"http://127.0.0.1:{server.server_address[1]}/ssf/events"

# Push stream: asks for two supported event types and one it does not know.
status, stream = call("POST", "/ssf/streams", {
    "delivery": {"method": PUSH, "endpoint_url": endpoint, "authorization_header": PUSH_SECRET},
    "events_requested": [CAEP_REVOKED, RISC_REVOKED, "https://example.com/unknown-event"],
    "description": "python receiver"}, expect=201)
push_id, audience = stream["stream_id"], stream["aud"]
check(stream["delivery"] == {"method": PUSH, "endpoint_url": endpoint}, f"delivery echoed without the secret: {stream}")
check(set(stream["events_delivered"]) == {CAEP_REVOKED, RISC_REVOKED}, f"events_delivered {stream}")
check(stream["iss"] == config["issuer"], f"stream iss {stream}")
call("GET", f"/ssf/streams/status?stream_id={push_id}", expect=200)
call("POST", "/ssf/verify", {"stream_id": push_id, "state": "push-state-1"}, expect=204)
sets = wait_pushed(1)
if check(len(sets) == 1, "the push verification event arrived"):
    claims = verify_set(sets[0], audience, "push verification")
    check(claims["events"].get(VERIFICATION) == {"state": "push-state-1"}, f"verification {claims}")
    check(claims["sub_id"] == {"format": "opaque", "id": push_id}, f"verification subject {claims['sub_id']}")

# Poll stream for session-revoked only.
status, poll_stream = call("POST", "/ssf/streams", {"delivery": {"method": POLL}, "events_requested": [CAEP_REVOKED]},
                           expect=201)
poll_id = poll_stream["stream_id"]
poll_url = poll_stream["delivery"]["endpoint_url"]
check(poll_url == f"{BASE}/ssf/poll/{poll_id}", f"poll endpoint {poll_stream}")
call("POST", "/ssf/verify", {"stream_id": poll_id, "state": "poll-state-1"}, expect=204)
status, answer = call("POST", poll_url[len(BASE):], {"maxEvents": 10, "returnImmediately": True}, expect=200)
polled = answer["sets"]
check(len(polled) == 1, f"one verification SET polled: {answer}")
for jti, token in polled.items():
    claims = verify_set(token, audience, "poll verification")
    check(claims["jti"] == jti, "the poll answer is keyed by jti")
    check(claims["events"].get(VERIFICATION) == {"state": "poll-state-1"}, f"poll verification {claims}")
call("POST", poll_url[len(BASE):], {"ack": list(polled), "maxEvents": 0, "returnImmediately": True}, expect=200)

# The admin acts: one session of alice, then every session of bob.
status, sessions = call("GET", "/api/v1/sessions?email=alice@corp.example&state=active", token=ADMIN, expect=200)
alice_session = sessions["sessions"][0]["id"]
call("POST", f"/api/v1/sessions/{alice_session}/terminate", {"reason": "odd location"}, token=ADMIN, expect=200)
call("POST", "/api/v1/users/terminate", {"email": "bob@corp.example", "reason": "laptop stolen"}, token=ADMIN, expect=200)

# Push: alice's session-revoked, then bob's sessions-revoked and session-revoked.
sets = wait_pushed(4)
check(len(sets) == 4, f"four pushed SETs, got {len(sets)}")
events = {}
for token in sets[1:]:
    claims = verify_set(token, audience, "push")
    (event_type, payload), = claims["events"].items()
    events.setdefault(event_type, []).append((claims, payload))
alice = [c for c, _ in events.get(CAEP_REVOKED, []) if c["sub_id"].get("format") == "complex"]
if check(len(alice) == 1, f"alice's session-revoked: {events}"):
    check(alice[0]["sub_id"] == {"format": "complex", "user": {"format": "email", "email": "alice@corp.example"},
                                 "session": {"format": "opaque", "id": alice_session}}, f"complex subject {alice[0]}")
bob = [(c, p) for c, p in events.get(CAEP_REVOKED, []) if c["sub_id"] == {"format": "email", "email": "bob@corp.example"}]
if check(len(bob) == 1, f"bob's session-revoked: {events}"):
    claims, payload = bob[0]
    check(payload.get("initiating_entity") == "admin" and payload.get("reason_admin") == {"en": "laptop stolen"},
          f"CAEP claims {payload}")
    check(isinstance(payload.get("event_timestamp"), int), f"event_timestamp {payload}")
risc = events.get(RISC_REVOKED, [])
check(len(risc) == 1 and risc[0][0]["sub_id"] == {"format": "email", "email": "bob@corp.example"}, f"RISC {risc}")
check(len({c["jti"] for c, _ in sum(events.values(), [])}) == 3, "unique jtis")

# Poll: the session-revoked events, long-poll style; acknowledged, they are gone.
status, answer = call("POST", poll_url[len(BASE):], {"maxEvents": 10}, expect=200)
check(len(answer["sets"]) == 2, f"two session-revoked polled: {answer}")
for jti, token in answer["sets"].items():
    claims = verify_set(token, audience, "poll")
    check(list(claims["events"]) == [CAEP_REVOKED], f"poll stream receives only what it asked for: {claims}")
call("POST", poll_url[len(BASE):], {"ack": list(answer["sets"]), "returnImmediately": True}, expect=200)
status, answer = call("POST", poll_url[len(BASE):], {"returnImmediately": True}, expect=200)
check(answer == {"sets": {}, "moreAvailable": False}, f"nothing after the acknowledgement: {answer}")

# Pause the push stream, end it.
call("POST", "/ssf/streams/status", {"stream_id": push_id, "status": "paused", "reason": "maintenance"}, expect=200)
status, answer = call("GET", f"/ssf/streams/status?stream_id={push_id}", expect=200)
check(answer == {"stream_id": push_id, "status": "paused", "reason": "maintenance"}, f"status {answer}")
call("DELETE", f"/ssf/streams?stream_id={poll_id}", expect=204)
call("GET", f"/ssf/streams?stream_id={poll_id}", expect=404)

json.dump({"failures": failures, "received": received, "push_stream": push_id}, open(REPORT, "w"), indent=1)
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
