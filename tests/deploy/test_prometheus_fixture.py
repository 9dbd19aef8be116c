"""tests/prometheus.py against a real Prometheus scraping a real /metrics endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer, make_server

import pytest
from prometheus_client import CollectorRegistry, Counter, make_wsgi_app

from devtools.localplane import free_port
from tests.prometheus import Prometheus, PromQLError

pytestmark = pytest.mark.prometheus


@pytest.fixture
def exporter() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    hits = Counter("fixture_hits", "Hits.", ["kind"], registry=registry)
    hits.labels("a").inc(3)
    port = free_port()
    server: WSGIServer = make_server("127.0.0.1", port, make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_scrapes_queries_and_stops(exporter: tuple[str, Counter]) -> None:
    address, hits = exporter
    prom = Prometheus.start({"fixture": [address]})
    try:
        assert prom.url.startswith("http://127.0.0.1:")
        up = prom.wait_for('up{job="fixture"} == 1')
        assert up[0]["metric"]["instance"] == address
        got = prom.wait_for('fixture_hits_total{kind="a"}')
        assert float(got[0]["value"][1]) == 3.0
        hits.labels("b").inc()
        prom.wait_for('fixture_hits_total{kind="b"} == 1')
        assert prom.label_values("kind", "fixture_hits_total") == ["a", "b"]
        assert prom.query("1 + 1")[0]["value"][1] == "2"
        with pytest.raises(PromQLError, match="bad_data"):
            prom.query("rate(fixture_hits_total[$__rate_interval])")
    finally:
        prom.stop()
    assert prom.proc.poll() is not None
    assert not prom.workdir.exists()
