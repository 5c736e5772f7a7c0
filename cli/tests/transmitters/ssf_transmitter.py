#!/usr/bin/env python3
"""An OpenID Shared Signals transmitter, written from the specifications
(SSF 1.0, RFC 8417 SETs, RFC 8935 push, RFC 8936 poll, CAEP 1.0, RISC 1.0,
RFC 9493 subject identifiers, draft-parecki-oauth-global-token-revocation
as Okta's Universal Logout uses it) with PyJWT, independently of
Portcullis's Rust code. It plays the identity provider: it publishes
`/.well-known/ssf-configuration` and its JWKS, manages the receiver's
stream (create, read, verification), pushes SETs to the receiver, queues
them for polling (answering `ack`, `maxEvents`, `returnImmediately`,
recording `setErrs`), and calls Universal Logout with a signed JWT.

The test drives it over `/control/*` (loopback only):
  POST /control/push      {"event", "payload", "sub_id", "jti"?, "variant"?}  → {"status", "body", "jti"}
  POST /control/enqueue   {"event", "payload", "sub_id", "jti"?, "variant"?}  → {"jti"}
  GET  /control/state     → {"pending", "acked", "set_errs", "streams", "verifications", "polls"}
  POST /control/logout    {"sub_id", "variant"?}                             → {"status", "body"}
Variants forge what an attacker or a broken transmitter would send:
bad_signature, wrong_aud, wrong_iss, hs256, alg_none, typ_jwt, stale_iat,
future_iat, no_jti, unknown_kid.

usage: ssf_transmitter.py RECEIVER_BASE AUDIENCE PUSH_TOKEN POLL_TOKEN
Prints `listening <port>` once serving.
"""
import base64
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

RECEIVER, AUDIENCE, PUSH_TOKEN, POLL_TOKEN = sys.argv[1:5]
PUSH, POLL = "urn:ietf:rfc:8935", "urn:ietf:rfc:8936"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())  # never published
KID = "tx-es256-1"
JWK = jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True)
JWK.update({"kid": KID, "alg": "ES256", "use": "sig"})

state = {"pending": {}, "acked": [], "set_errs": {}, "streams": [], "verifications": [], "polls": 0}
lock = threading.Condition()
BASE = None


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_set(event, payload, sub_id, jti=None, variant=None):
    now = int(time.time())
    claims = {
        "iss": BASE,
        "aud": AUDIENCE,
        "iat": now,
        "jti": jti or uuid.uuid4().hex,
        "sub_id": sub_id,
        "events": {event: payload or {}},
    }
    headers = {"typ": "secevent+jwt", "kid": KID}
    key, alg = KEY, "ES256"
    if variant == "wrong_aud":
        claims["aud"] = "https://someone-else.example"
    elif variant == "wrong_iss":
        claims["iss"] = "https://evil.example"
    elif variant == "stale_iat":
        claims["iat"] = now - 30 * 86400
    elif variant == "future_iat":
        claims["iat"] = now + 3600
    elif variant == "no_jti":
        del claims["jti"]
    elif variant == "typ_jwt":
        headers["typ"] = "JWT"
    elif variant == "bad_signature":
        key = OTHER_KEY
    elif variant == "unknown_kid":
        headers["kid"] = "not-published"
    if sub_id is None:
        del claims["sub_id"]
    if variant == "hs256":
        # A symmetric "signature" keyed with the public JWK: the classic key-confusion forgery.
        token = jwt.encode(claims, json.dumps(JWK), algorithm="HS256", headers=headers)
    elif variant == "alg_none":
        header = b64(json.dumps({"alg": "none", "typ": "secevent+jwt", "kid": KID}).encode())
        token = header + "." + b64(json.dumps(claims).encode()) + "."
    else:
        token = jwt.encode(claims, key, algorithm=alg, headers=headers)
    return claims.get("jti"), token


def post(url, body, headers):
    request = urllib.request.Request(url, data=body, method="POST")
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def push(token, endpoint=None, authorization=None):
    endpoint = endpoint or RECEIVER + "/ssf/receiver/python-tx"
    headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
    headers["Authorization"] = authorization or ("Bearer " + PUSH_TOKEN)
    return post(endpoint, token.encode(), headers)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def answer(self, status, document=None, content_type="application/json"):
        data = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if self.headers.get("Authorization") != "Bearer " + POLL_TOKEN:
            self.answer(401, {"err": "authentication_failed"})
            return False
        return True

    def do_GET(self):
        if self.path == "/.well-known/ssf-configuration":
            self.answer(200, {
                "spec_version": "1_0",
                "issuer": BASE,
                "jwks_uri": BASE + "/jwks",
                "delivery_methods_supported": [PUSH, POLL],
                "configuration_endpoint": BASE + "/streams",
                "verification_endpoint": BASE + "/verify",
            })
        elif self.path == "/jwks":
            self.answer(200, {"keys": [JWK]})
        elif self.path.startswith("/streams"):
            if self.authorized():
                with lock:
                    self.answer(200, list(state["streams"]))
        elif self.path == "/control/state":
            with lock:
                self.answer(200, state)
        else:
            self.answer(404, {"err": "not_found"})

    def do_POST(self):
        if self.path == "/streams":
            if not self.authorized():
                return
            request = self.body()
            delivery = request.get("delivery", {})
            if delivery.get("method") not in (PUSH, POLL):
                return self.answer(400, {"err": "invalid_request"})
            stream = {
                "stream_id": uuid.uuid4().hex,
                "iss": BASE,
                "aud": AUDIENCE,
                "delivery": dict(delivery),
                "events_supported": request.get("events_requested", []),
                "events_requested": request.get("events_requested", []),
                "events_delivered": request.get("events_requested", []),
            }
            if delivery["method"] == POLL:
                stream["delivery"]["endpoint_url"] = BASE + "/poll"
            with lock:
                state["streams"].append(stream)
            shown = json.loads(json.dumps(stream))
            shown["delivery"].pop("authorization_header", None)
            self.answer(201, shown)
        elif self.path == "/verify":
            if not self.authorized():
                return
            request = self.body()
            with lock:
                stream = next((s for s in state["streams"] if s["stream_id"] == request.get("stream_id")), None)
            if stream is None:
                return self.answer(404, {"err": "not_found"})
            sub_id = {"format": "opaque", "id": stream["stream_id"]}
            jti, token = make_set(VERIFICATION, {"state": request.get("state")}, sub_id)
            with lock:
                state["verifications"].append(jti)
            if stream["delivery"]["method"] == PUSH:
                threading.Thread(
                    target=push,
                    args=(token, stream["delivery"]["endpoint_url"], stream["delivery"].get("authorization_header")),
                ).start()
            else:
                with lock:
                    state["pending"][jti] = token
                    lock.notify_all()
            self.answer(204)
        elif self.path == "/poll":
            if not self.authorized():
                return
            self.poll(self.body())
        elif self.path == "/control/push":
            request = self.body()
            jti, token = make_set(request["event"], request.get("payload"), request.get("sub_id"),
                                  request.get("jti"), request.get("variant"))
            status, text = push(token)
            self.answer(200, {"status": status, "body": text, "jti": jti})
        elif self.path == "/control/enqueue":
            request = self.body()
            jti, token = make_set(request["event"], request.get("payload"), request.get("sub_id"),
                                  request.get("jti"), request.get("variant"))
            with lock:
                state["pending"][request.get("as_jti") or jti] = token
                lock.notify_all()
            self.answer(200, {"jti": jti})
        elif self.path == "/control/logout":
            request = self.body()
            self.answer(200, dict(zip(("status", "body"), logout(request["sub_id"], request.get("variant")))))
        else:
            self.answer(404, {"err": "not_found"})

    def poll(self, request):
        """RFC 8936 §2.4: acknowledge, record errors, hand over what is pending."""
        with lock:
            state["polls"] += 1
            for jti in request.get("ack", []):
                if state["pending"].pop(jti, None) is not None or jti not in state["acked"]:
                    state["acked"].append(jti)
            for jti, error in request.get("setErrs", {}).items():
                state["pending"].pop(jti, None)
                state["set_errs"][jti] = error
            limit = request.get("maxEvents")
            if not request.get("returnImmediately", False) and not state["pending"]:
                lock.wait(timeout=5)
            items = list(state["pending"].items())
            if limit is not None:
                items = items[:limit]
            more = len(state["pending"]) > len(items)
        self.answer(200, {"sets": dict(items), "moreAvailable": more})


def logout(sub_id, variant=None):
    now = int(time.time())
    claims = {"iss": BASE, "aud": RECEIVER + "/signals/global-token-revocation", "iat": now,
              "exp": now + 300, "jti": uuid.uuid4().hex}
    key = KEY
    if variant == "wrong_aud":
        claims["aud"] = "https://someone-else.example/global-token-revocation"
    elif variant == "aud_at_large":
        claims["aud"] = AUDIENCE
    elif variant == "expired":
        claims["exp"] = now - 600
    elif variant == "bad_signature":
        key = OTHER_KEY
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    status, text = post(RECEIVER + "/signals/global-token-revocation", json.dumps({"sub_id": sub_id}).encode(), headers)
    if variant == "replay":
        status, text = post(RECEIVER + "/signals/global-token-revocation",
                            json.dumps({"sub_id": sub_id}).encode(), headers)
    return status, text


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
BASE = f"http://127.0.0.1:{server.server_address[1]}"
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
