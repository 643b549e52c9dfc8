"""The service around the beacon: health, readiness, metrics, the snippet, `rokt-edge serve`."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.cli import GC_THRESHOLDS, tune_collector
from edge.logs import JsonFormatter, configure_logging
from edge.settings import Settings
from tests.conftest import ROOT
from tests.fake_capi import FakeCapi, Reply
from tests.live import LiveEdge, wait_for

ORDER = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u-1",
    "properties": {"order_id": "o"},
}
TEXT = {"content-type": "text/plain"}
# What /metrics shows once an order was delivered and a page view skipped
SERIES = (
    'rokt_edge_received_total{source="beacon",type="track"} 1.0',
    'rokt_edge_received_total{source="beacon",type="page"} 1.0',
    'rokt_edge_skipped_total{reason="not triggered"} 1.0',
    "rokt_edge_queued_total 1.0",
    'rokt_edge_delivered_total{dry_run="false"} 1.0',
    'rokt_edge_upstream_responses_total{status="202"} 1.0',
    'rokt_edge_ingest_seconds_count{source="beacon"} 2.0',
    "rokt_edge_outbox_oldest_pending_age_seconds",
    "rokt_edge_outbox_items",
)


def settings_for(tmp_path: Path, fake: FakeCapi, **values: object) -> Settings:
    return Settings(
        api_key=fake.api_key, api_secret=fake.api_secret, rokt_url=fake.url,
        database_url=f"sqlite:///{tmp_path / 'edge.db'}", poll_interval=0.05,
        backoff_base=0.05, pause_retry=0.2, metrics_interval=0.1,
        **values,  # type: ignore[arg-type]
    )  # fmt: skip


def test_healthz_and_readyz(tmp_path: Path, fake: FakeCapi) -> None:
    with LiveEdge(settings_for(tmp_path, fake)) as live:
        wait_for(lambda: live.edge.sender.running)
        assert httpx.get(live.url + "/healthz").json() == {"status": "ok"}
        ready = httpx.get(live.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "dry_run": False}


def test_readyz_says_not_ready_while_delivery_is_paused_on_credentials(
    tmp_path: Path, fake: FakeCapi
) -> None:
    # Given an upstream that rejects the credentials
    fake.reply(*[Reply(401)] * 50)
    with LiveEdge(settings_for(tmp_path, fake)) as live:
        httpx.post(live.url + "/e", content=json.dumps(ORDER), headers=TEXT)
        # Then readiness fails, saying why, until the credentials work again
        wait_for(lambda: httpx.get(live.url + "/readyz").status_code == 503)
        problems = httpx.get(live.url + "/readyz").json()["problems"]
        # and /metrics says so from its next rendering
        paused = "rokt_edge_delivery_paused 1.0"
        wait_for(lambda: paused in httpx.get(live.url + "/metrics").text)
    assert any(problem.startswith("delivery paused") for problem in problems)


def test_metrics_in_prometheus_text_format(tmp_path: Path, fake: FakeCapi) -> None:
    with LiveEdge(settings_for(tmp_path, fake)) as live:
        httpx.post(live.url + "/e", content=json.dumps(ORDER), headers=TEXT)
        httpx.post(live.url + "/e", content=json.dumps({"type": "page"}), headers=TEXT)
        wait_for(lambda: fake.accepted_message_ids())
        # (a rendering is made every 0.1 s here: the first one after both events' fates)
        wait_for(lambda: all(series in httpx.get(live.url + "/metrics").text for series in SERIES))
        response = httpx.get(live.url + "/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    for series in SERIES:
        assert series in text, series


def test_metrics_with_a_token_are_only_for_a_scraper_that_sends_it(
    tmp_path: Path, fake: FakeCapi
) -> None:
    with LiveEdge(settings_for(tmp_path, fake, metrics_token="scrape-me")) as live:
        # Given a Prometheus configured with the token (`authorization: credentials: …`)
        scraped = httpx.get(live.url + "/metrics", headers={"authorization": "Bearer scrape-me"})
        # When anyone else asks, without it or with another
        anonymous = httpx.get(live.url + "/metrics")
        guessed = httpx.get(live.url + "/metrics", headers={"authorization": "Bearer scrape-you"})
    assert scraped.status_code == 200
    assert "rokt_edge_store_up 1.0" in scraped.text
    # Then they get a JSON 401 that says how to authenticate, and no metrics
    for refused in (anonymous, guessed):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "unauthorized"
        assert "rokt_edge" not in refused.text


def test_the_routers_own_errors_are_json(tmp_path: Path, fake: FakeCapi) -> None:
    with LiveEdge(settings_for(tmp_path, fake)) as live:
        # When a path that does not exist is asked, or a path with a method it does not take
        missing = httpx.get(live.url + "/wp-login.php")
        wrong_method = httpx.get(live.url + "/e")
    # Then both answers are JSON errors, as every other error of the edge
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "not_found", "message": "nothing is served at this path"}
    }
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "POST"


def test_the_snippet_is_cacheable_and_compressed(tmp_path: Path) -> None:
    with LiveEdge(Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}")) as live:
        plain = httpx.get(live.url + "/rokt-edge.js", headers={"accept-encoding": "identity"})
        zipped = httpx.get(live.url + "/rokt-edge.js", headers={"accept-encoding": "gzip"})
        again = httpx.get(
            live.url + "/rokt-edge.js", headers={"if-none-match": plain.headers["etag"]}
        )
    served = (ROOT / "static" / "rokt-edge.js").read_bytes()
    assert plain.status_code == 200
    assert plain.content == served
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["cache-control"].startswith("public, max-age=")
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.content == served  # httpx decoded the gzip body
    assert again.status_code == 304
    assert again.content == b""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_runs_the_service_and_stops_gracefully_on_sigterm(
    tmp_path: Path, fake: FakeCapi
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ROKT_EDGE_")},
        "PYTHONPATH": str(ROOT),
        "ROKT_EDGE_API_KEY": fake.api_key,
        "ROKT_EDGE_API_SECRET": fake.api_secret,
        "ROKT_EDGE_ROKT_URL": fake.url,
        "ROKT_EDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'edge.db'}",
        "ROKT_EDGE_POLL_INTERVAL": "0.05",
        "ROKT_EDGE_LOG_FORMAT": "json",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", "--port", str(port)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(url), timeout=20)
        assert httpx.post(url + "/e", content=json.dumps(ORDER), headers=TEXT).status_code == 200
        wait_for(lambda: fake.accepted_message_ids(), timeout=10)
    finally:
        server.send_signal(signal.SIGTERM)
        _, logs = server.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal, as a SIGTERMed process should
    assert server.returncode == -signal.SIGTERM
    messages = [json.loads(line)["message"] for line in logs.splitlines() if line.startswith("{")]
    assert any(message.startswith("rokt-edge ready") for message in messages)
    assert "Application shutdown complete." in messages
    assert fake.api_secret not in logs


def test_serve_collects_cyclic_garbage_rarely_and_never_walks_the_start_up_heap() -> None:
    thresholds = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 10 * thresholds[0]
        assert gc.get_freeze_count() > 1000  # the modules, settings and app built before it
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_serve_refuses_a_bad_setting_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge", "serve"],
        env={"PYTHONPATH": str(ROOT), "ROKT_EDGE_CLIENT_RATE_LIMIT": "fast", "PATH": "/usr/bin"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "ROKT_EDGE_CLIENT_RATE_LIMIT = 'fast': must be a number" in result.stderr


def test_json_logs_are_one_object_per_line_with_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "rokt_edge.x", "levelname": "WARNING", "msg": "paused %s", "args": ("401",),
         "status": 401, "created": time.time()}
    )  # fmt: skip
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "paused 401"
    assert entry["level"] == "warning"
    assert entry["status"] == 401


def test_the_log_keeps_the_senders_lines_not_one_per_upstream_request() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("text", logging.INFO)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        assert logging.getLogger("rokt_edge.sender").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("httpx").setLevel(logging.NOTSET)


def hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


def test_the_edges_address_says_what_it_is_and_where_to_look_next(tmp_path: Path) -> None:
    # Given a new edge in dry run (no credentials: the demo is on)
    with LiveEdge(Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}")) as live:
        # When a newcomer opens its address in a browser, and follows each link
        home = httpx.get(live.url + "/", headers={"accept": "text/html,*/*;q=0.8"})
        links = hrefs(home.text)
        followed = {link: httpx.get(live.url + link).status_code for link in links}
        # or a script asks for JSON
        document = httpx.get(live.url + "/", headers={"accept": "application/json"})

    # Then a small HTML page says what this is, needing no script, and links to the demo and
    # its panel, readiness, health, metrics and the snippet, each of them served
    assert home.status_code == 200
    assert home.headers["content-type"] == "text/html; charset=utf-8"
    assert "<script" not in home.text
    assert "self-hosted, first-party edge for Rokt conversions" in home.text
    assert "<b>Dry run</b>" in home.text
    assert links == ["/demo", "/demo/inspect", "/readyz", "/healthz", "/metrics", "/rokt-edge.js"]
    assert set(followed.values()) == {200}
    assert "ROKT_EDGE_METRICS_TOKEN" in home.text  # how to keep /metrics to a scraper
    # and where the documentation is, offline: the repository's README and docs/
    assert "<code>README.md</code> and <code>docs/</code> in the rokt-edge repository" in home.text
    # And the same, for a script, as JSON
    assert document.headers["content-type"] == "application/json"
    assert document.json()["links"]["demo"] == "/demo"
    assert document.json()["links"]["readyz"] == "/readyz"
    assert document.json()["dry_run"] is True
    assert home.headers["vary"] == document.headers["vary"] == "Accept"


def test_a_production_edges_address_links_no_demo_and_says_metrics_need_the_token(
    tmp_path: Path, fake: FakeCapi
) -> None:
    with LiveEdge(settings_for(tmp_path, fake, metrics_token="scrape-me")) as live:
        home = httpx.get(live.url + "/")
        document = httpx.get(live.url + "/", headers={"accept": "application/json"})
    assert hrefs(home.text) == ["/readyz", "/healthz", "/metrics", "/rokt-edge.js"]
    assert "Dry run" not in home.text
    assert "only for <code>Authorization: Bearer &lt;token&gt;</code>" in home.text
    assert "demo" not in document.json()["links"]
    assert document.json()["metrics_token_required"] is True
    assert "scrape-me" not in home.text + document.text


def test_every_page_gets_its_icon_demo_or_not(tmp_path: Path, fake: FakeCapi) -> None:
    # A browser asks every site for /favicon.ico: a dry run's demo pages, a production edge's /
    dry = Settings(database_url=f"sqlite:///{tmp_path / 'dry.db'}")
    for settings in (dry, settings_for(tmp_path, fake)):
        with LiveEdge(settings) as live:
            icon = httpx.get(live.url + "/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/x-icon"
        assert icon.content.startswith(b"\x00\x00\x01\x00\x01\x00\x10\x10")  # one 16x16 icon
        assert len(icon.content) < 1024
        assert icon.headers["cache-control"].startswith("public, max-age=")


def test_the_start_up_log_says_where_the_demo_is_and_who_its_data_is_for(
    tmp_path: Path, fake: FakeCapi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rokt_edge.app")

    def started(settings: Settings, **given: Any) -> list[str]:
        caplog.clear()
        with LiveEdge(settings, **given):
            pass
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("demo")]

    dry = Settings(database_url=f"sqlite:///{tmp_path / 'dry.db'}")
    # A dry run, as `rokt-edge serve` starts it with nothing set: the demo's path on its address
    assert started(dry) == [
        "demo: the shop at /demo, its panel at /demo/inspect (on this edge's address); its data "
        "only for a browser on this machine (ROKT_EDGE_DEMO=true: any)"
    ]
    # Told where it is served, the edge names the demo's full address
    assert started(dry, base_url="http://127.0.0.1:18090") == [
        "demo: the shop at http://127.0.0.1:18090/demo, its panel at "
        "http://127.0.0.1:18090/demo/inspect; its data only for a browser on this machine "
        "(ROKT_EDGE_DEMO=true: any)"
    ]
    # With credentials, no demo and no such line; with the demo asked for, pages only
    assert started(settings_for(tmp_path, fake)) == []
    assert started(settings_for(tmp_path, fake, demo=True)) == [
        "demo: the shop at /demo, its panel at /demo/inspect (on this edge's address); its panel "
        "shows traffic only in dry run"
    ]
