"""Traces reach a collector over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The collector is a real HTTP server speaking the OTLP/HTTP protocol's receiving side
(`POST /v1/traces`, an `ExportTraceServiceRequest` in protobuf); the process is a real `q2c`
command (`q2c doctor`, which asks the CRM sandbox over HTTP) started the way an operator starts
it, with nothing but the standard OpenTelemetry variables added.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[2]


class _Collector(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/v1/traces":
            _Collector.received.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_q2c_process_exports_its_spans_to_the_configured_collector(console_stack):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            **os.environ,
            **console_stack.cli_env(),
            "PYTHONPATH": str(ROOT),
            "Q2C_CRM_URL": console_stack.settings.crm.base_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "OTEL_SERVICE_NAME": "q2c-doctor-under-test",
        }
        done = subprocess.run(
            [sys.executable, "-m", "q2c.cli.main", "doctor", "-s", "crm"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.shutdown()

    spans = []
    for request in _Collector.received:
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            for scope in resource_spans.scope_spans:
                spans += [(service, s) for s in scope.spans]
    assert spans, "the collector received no spans"
    assert {service for service, _ in spans} == {"q2c-doctor-under-test"}
    by_name = {s.name: s for _, s in spans}
    root = by_name["q2c doctor"]
    vendor = [s for _, s in spans if s.name.startswith("crm ")]
    assert vendor and all(s.trace_id == root.trace_id and s.parent_span_id for s in vendor)
    attributes = {a.key: a.value for a in vendor[0].attributes}
    assert attributes["q2c.vendor.system"].string_value == "crm"
    assert attributes["q2c.correlation_id"].string_value  # the same ID as the ledger's audit row
