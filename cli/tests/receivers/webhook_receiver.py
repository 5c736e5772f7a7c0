#!/usr/bin/env python3
"""A relying party's webhook endpoint, written independently of Portcullis
from the contract in README ("Relying parties" → webhook, and the SIEM
webhook's JSON lines, one event per line, the same signature): it checks the
HMAC-SHA256 signature over "<timestamp>.<body>" with Python's own hmac, the
timestamp's freshness, and records every request it received as one JSON
line, so the tests assert what the receiver actually got.

usage: webhook_receiver.py PORT_FILE LOG_FILE SECRET_FILE PLAN
PLAN: comma-separated answers, one per request, the last one repeating:
  204, 401, 500...   answer with that status
  429:N              answer 429 with Retry-After: N
  hang:N             hold the request N seconds, then drop the connection
"""
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port_file, log_file, secret_file, plan = sys.argv[1:5]
secret = open(secret_file, "rb").read().strip()
answers = plan.split(",")
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        timestamp = self.headers.get("X-Portcullis-Timestamp", "")
        signature = self.headers.get("X-Portcullis-Signature", "")
        expected = "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        with lock:
            answer = answers[min(count, len(answers) - 1)]
            count += 1
            record = {
                "n": count,
                "path": self.path,
                "at": time.time(),
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "content_type": self.headers.get("Content-Type"),
                "signature_ok": hmac.compare_digest(signature, expected) and fresh,
                "body": [json.loads(line) for line in body.splitlines() if line.strip()]
                if self.headers.get("Content-Type") == "application/x-ndjson"
                else json.loads(body or b"null"),
                "answer": answer,
            }
            with open(log_file, "a") as log:
                log.write(json.dumps(record) + "\n")
        if answer.startswith("hang:"):
            time.sleep(float(answer.split(":")[1]))
            self.close_connection = True
            return
        if answer.startswith("429:"):
            self.send_response(429)
            self.send_header("Retry-After", answer.split(":")[1])
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"slow down\r\n")
            return
        status = int(answer)
        payload = b"" if status == 204 else json.dumps({"error": f"answer {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
