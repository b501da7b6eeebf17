#!/usr/bin/env python3
"""Mock management API for developing the interop-rs portal without the Rust backend.

Dev aid only (python3 standard library, no dependencies):

    python3 crates/portal/mock_api.py [--port 8099] [--token SECRET]

then open http://127.0.0.1:8099/portal (also /portal/#/trace/1, /portal/trace/15, ...).

* Serves crates/portal/assets/ exactly like the `portal` crate: /portal, /portal/,
  /portal/assets/{app.js,style.css} (no-cache) and index.html for any other /portal/...
  path. Assets are re-read on every request: edit and reload.
* Answers the /api endpoints of the management API (crates/production/src/api.rs: same
  shapes, statuses and error bodies, e.g. a failed test send is a 502 with `session_id`,
  `next_before` is set whenever a page is full, the log's `level` is an exact match,
  traces carry their session's events) with in-memory sample data
  for the "Formation" production (ServiceCSV, RestService, Router, FileOperation,
  IrisOperation, PostgresOperation) and some sessions:
    session 1   a CSV row: ServiceCSV -> Router -> File/Iris/Postgres operations and back
    session 9   a REST request whose IrisOperation reply is an error
    session 15  a 50-message batch (with a Router self-call) to check trace readability
    later       small REST sessions, so that message paging has something to page through
* Counters move while the production runs; start/stop/update, enable/disable/restart,
  test and resend change the state. Test bodies containing the word "fail" produce an
  error reply (502). With --token, every /api call needs "Authorization: Bearer SECRET".
"""
import argparse
import copy
import json
import os
import random
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
CONTENT_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
LOCK = threading.Lock()
CLOCK = [datetime(2026, 12, 3, 16, 45, 24, 123456, tzinfo=timezone.utc)]


def now(step_ms=7):
    CLOCK[0] += timedelta(milliseconds=step_ms)
    return CLOCK[0].strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def item(name, cls, kind, settings, accepts, targets, state="running", enabled=True, processed=0, errors=0,
         detail=None, restarts=0, alerts=0, comment=None):
    return {"name": name, "class": cls, "kind": kind, "enabled": enabled, "pool_size": 1, "state": state,
            "state_detail": detail, "queued": 0, "processed": processed, "errors": errors, "restarts": restarts,
            "alerts": alerts, "accepts": accepts, "targets": targets, "settings": settings, "comment": comment}


PRODUCTION = {"name": "Formation", "state": "running", "testing_enabled": True, "items": [
    item("ServiceCSV", "svc-csv", "service", {"path": "/data/in", "file_spec": "*.csv", "archive_path": "/data/archive",
         "error_path": "/data/error", "call_interval_ms": 200, "delimiter": ";", "max_in_flight": 256, "target": "Router"},
         [], {"target": "Router"}, processed=57, comment="Formation rows from the CSV drop folder"),
    item("RestService", "svc-rest", "service", {"target": "Router", "iris_target": "IrisOperation"},
         [], {"target": "Router", "iris_target": "IrisOperation"}, processed=21),
    item("Router", "proc-router", "process", {"file_target": "FileOperation", "iris_target": "IrisOperation",
         "postgres_target": "PostgresOperation", "postgres_rule": "always"}, ["FormationRequest"],
         {"file_target": "FileOperation", "iris_target": "IrisOperation", "postgres_target": "PostgresOperation"},
         processed=78, errors=1),
    item("FileOperation", "op-file", "operation", {"path": "/data/out", "filename": "formation.txt"},
         ["FormationRequest"], {}, processed=77),
    item("IrisOperation", "op-iris", "operation", {"flag_ratio": 0.0},
         ["TrainingIrisRequest", "TrainingListRequest", "TrainingGetRequest", "TrainingUpdateRequest", "TrainingDeleteRequest"],
         {}, state="error", processed=76, errors=1,
         detail="on_init failed: embedded database: database is locked", restarts=3, alerts=1),
    item("PostgresOperation", "op-postgres", "operation", {"url": "postgres://formation:***@db:5432/formation"},
         ["FormationRequest"], {}, state="disabled", enabled=False, processed=40),
]}

TYPES = [
    {"type": "FormationRequest", "example": {"formation": {"id": 1, "nom": "Rust avancé", "salle": "Salle 101"}}},
    {"type": "FormationResponse", "example": None},
    {"type": "TrainingIrisRequest", "example": {"training": {"name": "Rust avancé", "room": "Salle 101"}}},
    {"type": "TrainingIrisResponse", "example": None},
]
REPLY_TYPE = {"TrainingIrisRequest": "TrainingIrisResponse"}
MESSAGES = []  # full messages (header + body), id = index + 1
EVENTS = []


def add(session, parent, src, tgt, typ, kind, body, error=None):
    mid = len(MESSAGES) + 1
    created = now()
    MESSAGES.append({"id": mid, "session_id": session or mid, "parent_id": parent, "source": src, "target": tgt,
                     "type": typ, "kind": kind, "status": "error" if error else "completed", "is_error": bool(error),
                     "error": error, "created": created, "processed": now(3), "body": body})
    return mid


def formation(i):
    return {"formation": {"id": i, "nom": f"Formation {i}", "salle": f"Salle {100 + i}"}}


def route_row(sid, parent, caller, i, pg=True, iris_error=None):
    """Router handling one formation: File, Iris (and Postgres) operations."""
    r = add(sid, parent, "Router", "FileOperation", "FormationRequest", "request", formation(i))
    add(sid, r, "FileOperation", "Router", "FormationResponse", "reply", {"formation_id": i, "status": "written"})
    r = add(sid, parent, "Router", "IrisOperation", "TrainingIrisRequest", "request",
            {"training": {"name": f"Formation {i}", "room": f"Salle {100 + i}"}})
    if iris_error:
        add(sid, r, "IrisOperation", "Router", "TrainingIrisResponse", "reply", {"error": iris_error}, error=iris_error)
        return iris_error
    add(sid, r, "IrisOperation", "Router", "TrainingIrisResponse", "reply", {"id": 1000 + i, "status": "created"})
    if pg:
        r = add(sid, parent, "Router", "PostgresOperation", "FormationRequest", "request", formation(i))
        add(sid, r, "PostgresOperation", "Router", "FormationResponse", "reply", {"formation_id": i, "status": "inserted"})
    return None


def build_sample():
    # session 1: one CSV row
    first = add(None, None, "ServiceCSV", "Router", "FormationRequest", "request", formation(1))
    route_row(first, first, "ServiceCSV", 1)
    add(first, first, "Router", "ServiceCSV", "FormationResponse", "reply", {"formation_id": 1, "status": "ok"})
    # session 9: IRIS error
    first = add(None, None, "RestService", "Router", "FormationRequest", "request", formation(2))
    err = "HTTP 500 from http://iris:52773/api/training: <b>ERROR #5002</b> ObjectScript error"
    route_row(first, first, "RestService", 2, iris_error=err)
    add(first, first, "Router", "RestService", "FormationResponse", "reply", {"error": err}, error=err)
    log("IrisOperation", "error", f"error reply: {err}", first)
    log("IrisOperation", "alert", "alert: error reply (1 in the last 60 s)", first)
    # session 15: 50 messages
    first = add(None, None, "ServiceCSV", "Router", "FormationRequest", "request",
                {"batch": [formation(i)["formation"] for i in range(10, 18)]})
    split = add(first, first, "Router", "Router", "FormationRequest", "request", {"split": 8})
    add(first, split, "Router", "Router", "FormationResponse", "reply", {"parts": 8})
    for i in range(10, 17):
        route_row(first, first, "ServiceCSV", i)
    route_row(first, first, "ServiceCSV", 17, pg=False)
    add(first, first, "Router", "ServiceCSV", "FormationResponse", "reply", {"formations": 8, "status": "ok"})
    assert len([m for m in MESSAGES if m["session_id"] == first]) == 50
    # small sessions for paging
    for i in range(20, 45):
        first = add(None, None, "RestService", "Router", "FormationRequest", "request", formation(i))
        r = add(first, first, "Router", "FileOperation", "FormationRequest", "request", formation(i))
        add(first, r, "FileOperation", "Router", "FormationResponse", "reply", {"formation_id": i, "status": "written"})
        add(first, first, "Router", "RestService", "FormationResponse", "reply", {"formation_id": i, "status": "ok"})
    levels = ["info"] * 6 + ["debug"] * 3 + ["trace", "warn", "warn", "error", "alert"]
    texts = {"trace": "poll tick", "debug": "dispatching message", "info": "processed message",
             "warn": "slow reply from target (2.3 s)", "error": "HTTP 500 from IRIS: <b>ERROR #5002</b>",
             "alert": "item stopped after 3 consecutive errors"}
    rnd = random.Random(7)
    log(None, "info", "Production Formation started")
    for _ in range(70):
        lvl = rnd.choice(levels)
        log(rnd.choice([it["name"] for it in PRODUCTION["items"]] + [None]), lvl, texts[lvl])


def log(item_name, level, text, session=None):
    EVENTS.append({"id": len(EVENTS) + 1, "time": now(250), "level": level, "item": item_name,
                   "session_id": session, "text": text})


def find_item(name):
    return next((it for it in PRODUCTION["items"] if it["name"] == name), None)


def header(m):
    return {k: v for k, v in m.items() if k != "body"}


def run_test(it, typ, body, source="TestingService"):
    """Simulate a test request to item `it`; returns (status, payload) as the real API does."""
    if not it["enabled"]:  # refused before anything is stored: no session
        return 409, {"error": f"item '{it['name']}' is disabled", "session_id": None}
    sid = add(None, None, source, it["name"], typ, "request", body)
    if "fail" in json.dumps(body).lower():
        err = f"{it['name']}: simulated failure (the body contains 'fail')"
        add(sid, sid, it["name"], source, REPLY_TYPE.get(typ, "FormationResponse"), "reply", {"error": err}, error=err)
        it["errors"] += 1
        log(it["name"], "error", f"error reply: {err}", sid)
        return 502, {"error": f"{it['name']} replied with an error: {err}", "session_id": sid}
    if it["name"] == "Router":
        route_row(sid, sid, source, 99, pg=find_item("PostgresOperation")["enabled"])
    reply = {"type": REPLY_TYPE.get(typ, "FormationResponse"), "body": {"status": "ok", "handled_by": it["name"]}}
    add(sid, sid, it["name"], source, reply["type"], "reply", reply["body"])
    it["processed"] += 1
    return 200, {"session_id": sid, "request_id": sid, "reply": reply}


def tick():
    """Make the counters move while the production runs."""
    if PRODUCTION["state"] != "running":
        return
    for it in PRODUCTION["items"]:
        if it["state"] == "running" and random.random() < 0.5:
            it["processed"] += random.randint(1, 3)
            it["queued"] = random.randint(0, 4)


class Handler(BaseHTTPRequestHandler):
    token = None

    def log_message(self, fmt, *args):  # quieter console
        pass

    def send(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def handle_any(self, method):
        url = urlparse(self.path)
        path = url.path
        if path == "/":
            self.send_response(302)
            self.send_header("Location", "/portal/")
            self.end_headers()
            return
        if method == "GET" and (path == "/portal" or path.startswith("/portal/")):
            name = path[len("/portal/assets/"):] if path.startswith("/portal/assets/") else None
            if name is not None and name not in CONTENT_TYPES:
                return self.send(404, b"asset not found", "text/plain")
            with open(os.path.join(ASSETS, name or "index.html"), "rb") as f:
                return self.send(200, f.read(), CONTENT_TYPES.get(name, "text/html; charset=utf-8"))
        if not path.startswith("/api/"):
            return self.send(404, {"error": "not found"})
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            return self.send(401, {"error": "missing or invalid API token"})
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = None
        if method == "POST":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self.send(400, {"error": "invalid JSON body"})
        parts = [unquote(p) for p in path.split("/")[2:]]
        with LOCK:
            status, payload = self.api(method, parts, q, body)
        self.send(status, payload)

    def api(self, method, parts, q, body):
        match (method, parts):
            case ("GET", ["production"]):
                tick()
                return 200, PRODUCTION
            case ("POST", ["production", action]) if action in ("start", "stop", "update"):
                names = [it["name"] for it in PRODUCTION["items"]]
                if action == "update":
                    log(None, "info", "configuration updated")
                    return 200, {"ok": True, "message": f"updated: 0 restarted, 0 started, 0 stopped, {len(names)} unchanged",
                                 "report": {"started": [], "restarted": [], "stopped": [], "unchanged": names}}
                want = "running" if action == "start" else "stopped"
                if PRODUCTION["state"] == want:
                    return 200, {"ok": True, "message": f"the production is already {want}"}
                PRODUCTION["state"] = want
                for it in PRODUCTION["items"]:
                    if it["enabled"]:
                        it["state"], it["queued"] = want, 0
                log(None, "info", f"production {want}")
                return 200, {"ok": True, "message": f"production 'Formation' {'started' if want == 'running' else 'stopped'}"}
            case ("POST", ["items", name, action]):
                it = find_item(name)
                if not it:
                    return 404, {"error": f"no item named '{name}'"}
                if action == "test":
                    if not PRODUCTION["testing_enabled"]:
                        return 403, {"error": "testing is disabled: set testing_enabled = true in [production]"}
                    typ = (body or {}).get("type")
                    if typ not in [t["type"] for t in TYPES]:
                        known = ", ".join(t["type"] for t in TYPES)
                        return 400, {"error": f"unknown message type '{typ}' (known: {known})"}
                    if typ not in it["accepts"]:
                        accepts = ", ".join(it["accepts"]) or "nothing: a service takes its input from outside"
                        return 422, {"error": f"item '{name}' (class {it['class']}) does not accept {typ} (accepts: {accepts})"}
                    return run_test(it, typ, (body or {}).get("body"))
                running = "running" if PRODUCTION["state"] == "running" else "stopped"
                if action == "enable":
                    it["enabled"], it["state"], it["state_detail"] = True, running, None
                    log(name, "info", "enabled")
                elif action == "disable":
                    it["enabled"], it["state"], it["state_detail"], it["queued"] = False, "disabled", None, 0
                    log(name, "info", "stopped")
                    log(name, "info", "disabled")
                elif action == "restart":
                    if not it["enabled"]:
                        return 409, {"error": f"item '{name}' is disabled: enable it instead"}
                    it["state"], it["state_detail"] = running, None
                    log(name, "info", "restarted")
                else:
                    return 404, {"error": f"no API endpoint POST /api/items/{name}/{action}"}
                return 200, it
            case ("GET", ["message-types"]):
                return 200, {"types": TYPES}
            case ("GET", ["messages"]):
                try:
                    limit = min(int(q.get("limit") or 100), 1000)
                    before = int(q["before"]) if q.get("before") else None
                    session = int(q["session"]) if q.get("session") else None
                except ValueError:
                    return 400, {"error": "'session', 'limit' and 'before' must be integers"}
                if limit < 1:
                    return 400, {"error": f"'limit' must be at least 1, got {limit}", "field": "limit"}
                if q.get("status") and q["status"] not in ("queued", "delivered", "completed", "error", "discarded"):
                    return 400, {"error": f"unknown status '{q['status']}' (queued, delivered, completed, error, discarded)",
                                 "field": "status"}
                rows = [m for m in reversed(MESSAGES)
                        if (before is None or m["id"] < before) and (session is None or m["session_id"] == session)
                        and all(not q.get(k) or m[k] == q[k] for k in ("source", "target", "type", "status"))]
                page = rows[:limit]
                # As the real API: a full page has a next_before (the next page may then be empty).
                return 200, {"messages": [header(m) for m in page],
                             "next_before": page[-1]["id"] if len(page) == limit else None}
            case ("GET", ["messages", mid]) if mid.isdigit() and 0 < int(mid) <= len(MESSAGES):
                return 200, MESSAGES[int(mid) - 1]
            case ("POST", ["messages", mid, "resend"]) if mid.isdigit() and 0 < int(mid) <= len(MESSAGES):
                m = MESSAGES[int(mid) - 1]
                if m["kind"] != "request":
                    return 400, {"error": f"message {mid} is a {m['kind']}: only requests can be resent"}
                it = find_item(m["target"])
                status, res = run_test(it, m["type"], copy.deepcopy(m["body"]), source="Resend")
                if status != 200:
                    return status, {**res, "original_id": int(mid)}
                log(None, "info", f"resend of message {mid} (session {m['session_id']}) to '{m['target']}' "
                    f"as message {res['request_id']}", res["session_id"])
                return 200, {"id": res["request_id"], "session_id": res["session_id"], "original_id": int(mid),
                             "reply": res["reply"]}
            case ("GET", ["messages", mid]) | ("POST", ["messages", mid, "resend"]):
                return 404, {"error": f"no message with id {mid}"}
            case ("GET", ["sessions", sid, "trace"]):
                msgs = [m for m in MESSAGES if sid.isdigit() and m["session_id"] == int(sid)]
                events = [e for e in EVENTS if sid.isdigit() and e["session_id"] == int(sid)]
                if not msgs and not events:
                    return 404, {"error": f"no session {sid}"}
                return 200, {"session_id": int(sid), "messages": msgs, "events": events}
            case ("GET", ["log"]):
                lvl = (q.get("level") or "").lower()
                if lvl and lvl not in ("trace", "debug", "info", "warn", "error", "alert"):
                    return 400, {"error": f"unknown level '{lvl}' (trace, debug, info, warn, error, alert)", "field": "level"}
                limit = min(int(q.get("limit") or 100), 5000) if (q.get("limit") or "1").isdigit() else 100
                rows = [e for e in reversed(EVENTS) if (not lvl or e["level"] == lvl)  # an exact level, as the real API
                        and (not q.get("item") or e["item"] == q["item"])]
                return 200, {"events": rows[:limit]}
        return 404, {"error": f"no API endpoint {method} /api/{'/'.join(parts)}"}


def main():
    ap = argparse.ArgumentParser(description="Mock interop-rs management API + portal assets")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", help="require this bearer token on /api calls")
    args = ap.parse_args()
    build_sample()
    Handler.token = args.token
    print(f"Portal mock on http://{args.host}:{args.port}/portal  (token: {'required' if args.token else 'none'})")
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
