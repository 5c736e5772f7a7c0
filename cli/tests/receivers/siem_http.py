#!/usr/bin/env python3
"""Local servers implementing the documented request/response contracts of
two SaaS SIEM intakes we cannot reach from the test machine, written from
their documentation, independently of Portcullis's Rust code:

- Splunk HTTP Event Collector, POST /services/collector/event
  (docs.splunk.com: "Format events for HTTP Event Collector", "HTTP Event
  Collector REST API endpoints", "Troubleshoot HTTP Event Collector" — the
  status codes: 200 {"text":"Success","code":0}; 403 {"text":"Invalid
  token","code":4}; 401 {"text":"Token is required","code":2}; 400
  {"text":"No data","code":5} / {"text":"Invalid data format","code":6,
  "invalid-event-number":N}; 503 {"text":"Server is busy","code":9}).
  Events are JSON objects concatenated in one body.
- Elasticsearch Bulk API, POST /_bulk (elastic.co: "Bulk API" — NDJSON
  action/document line pairs; the answer {"took","errors","items":[{"create":
  {"_index","_id","status","error"?}}]} lists one item per action, in order;
  a `create` of an existing _id fails with 409 version_conflict_engine_exception;
  items may fail alone: 429 es_rejected_execution_exception, 400
  mapper_parsing_exception).

usage: siem_http.py PORT_FILE LOG_FILE HEC_TOKEN
Faults, for the tests: the first HEC request is answered 503 (server busy);
the first bulk request has its second item rejected with 429; any document
whose message contains "poison" is refused for good with 400. Every event
or document stored is appended to LOG_FILE as {"sink": "splunk"|"elastic", ...}.
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port_file, log_file, hec_token = sys.argv[1:4]
lock = threading.Lock()
state = {"hec_requests": 0, "bulk_requests": 0, "docs": {}}


def record(entry):
    with open(log_file, "a") as log:
        log.write(json.dumps(entry) + "\n")


def concatenated(text):
    decoder, events, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at] in " \r\n\t":
            at += 1
        if at >= len(text):
            return events
        event, at = decoder.raw_decode(text, at)
        events.append(event)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, document):
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        if self.path == "/services/collector/event":
            return self.hec(body)
        if self.path == "/_bulk":
            return self.bulk(body)
        self.answer(404, {"error": "no such endpoint"})

    def hec(self, body):
        auth = self.headers.get("Authorization", "")
        if not auth:
            return self.answer(401, {"text": "Token is required", "code": 2})
        if auth != "Splunk " + hec_token:
            return self.answer(403, {"text": "Invalid token", "code": 4})
        with lock:
            state["hec_requests"] += 1
            if state["hec_requests"] == 1:
                return self.answer(503, {"text": "Server is busy", "code": 9})
        try:
            events = concatenated(body)
        except ValueError:
            return self.answer(400, {"text": "Invalid data format", "code": 6})
        if not events:
            return self.answer(400, {"text": "No data", "code": 5})
        for n, event in enumerate(events):
            if not isinstance(event, dict) or "event" not in event:
                return self.answer(400, {"text": "Event field is required", "code": 12, "invalid-event-number": n})
        with lock:
            for event in events:
                record({"sink": "splunk", "time": event.get("time"), "sourcetype": event.get("sourcetype"),
                        "host": event.get("host"), "event": event["event"]})
        self.answer(200, {"text": "Success", "code": 0})

    def bulk(self, body):
        if self.headers.get("Content-Type") != "application/x-ndjson":
            return self.answer(400, {"error": "Content-Type header [application/json] is not supported"})
        lines = [line for line in body.split("\n") if line.strip()]
        if len(lines) % 2:
            return self.answer(400, {"error": "The bulk request must be terminated by a newline"})
        items, errors = [], False
        with lock:
            state["bulk_requests"] += 1
            first = state["bulk_requests"] == 1
            for n in range(0, len(lines), 2):
                action, document = json.loads(lines[n]), json.loads(lines[n + 1])
                create = action["create"]
                item = {"_index": create["_index"], "_id": create["_id"]}
                if first and n == 2:
                    item.update(status=429, error={"type": "es_rejected_execution_exception"})
                elif create["_id"] in state["docs"]:
                    item.update(status=409, error={"type": "version_conflict_engine_exception"})
                elif "poison" in document.get("message", ""):
                    item.update(status=400, error={"type": "mapper_parsing_exception"})
                else:
                    state["docs"][create["_id"]] = document
                    record({"sink": "elastic", "_index": create["_index"], "_id": create["_id"], "doc": document})
                    item.update(status=201, result="created")
                errors = errors or item["status"] >= 300
                items.append({"create": item})
        self.answer(200, {"took": 1, "errors": errors, "items": items})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
