"""The REST client of the live tests (churnflow_sim.live_airflow.Api) against a small HTTP server on
localhost: it tries a call again only where the API server's log shows the one known SQLite limit
(the audit log's write, docs/operations.md), and a failure's message carries that log."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from churnflow_sim.live_airflow import Api


@pytest.fixture
def server(tmp_path):
    """Answers each POST with the next of ``answers`` (status, error ID or None); writes the log a launcher would."""
    log = tmp_path / "launcher.log"
    log.write_text("api-server | started\n")
    state = {"answers": [], "calls": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            status, error_id, statement = state["answers"][state["calls"]]
            state["calls"] += 1
            if error_id:
                with log.open("a") as out:
                    out.write(f"api-server | [error    ] Error with id {error_id}, statement: {statement}\n"
                              "api-server | Traceback (most recent call last):\n")
            body = json.dumps({"detail": f"look for ID {error_id}" if error_id else "logical date is in the future"})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield Api(f"http://127.0.0.1:{httpd.server_port}", log), state
    httpd.shutdown()


def test_a_call_that_failed_on_the_audit_logs_sqlite_lock_is_tried_again(server):
    api, state = server
    state["answers"] = [(500, "Lk1", "INSERT INTO log (dttm, dag_id) VALUES (?, ?)"), (400, None, None)]
    r = api.request("POST", "/dags/churn_nightly/dagRuns", json={})
    assert r.status_code == 400 and state["calls"] == 2
    assert api.retried == ["POST /dags/churn_nightly/dagRuns: 500 on the audit log's write"]


def test_any_other_server_error_is_answered_at_once_with_its_log(server):
    api, state = server
    state["answers"] = [(500, "Ot2", "UPDATE dag_run SET state=?"), (400, None, None)]
    with pytest.raises(AssertionError, match="UPDATE dag_run"):
        api("POST", "/dags/churn_nightly/dagRuns", json={})
    assert state["calls"] == 1 and api.retried == []


def test_a_lock_that_does_not_clear_fails_after_three_tries(server):
    api, state = server
    state["answers"] = [(500, f"Lk{i}", "INSERT INTO log (dttm) VALUES (?)") for i in range(3)]
    assert api.request("POST", "/dags/x/dagRuns", json={}).status_code == 500
    assert state["calls"] == 3 and len(api.retried) == 2
