"""Every golden vector of contract A, run through preview as `rokt-edge preview` runs it.

The golden file's note: compare JSON values; key order does not matter, and empty objects such
as `device_info: {}` may be present or absent. rokt-edge adds one key Segment's vectors do not
have, `source_request_id` (the upstream's request de-duplication key, deterministic per mapping
and event): it is checked for presence and stability, then set aside before comparing.

Preview applies the sender's 30-day data-age rule on its clock, and the vectors' events are from
January 2024, so they are previewed in this process, an hour after their time (`preview`'s
`now`; settings and mappings read as the command reads them), when they would have been sent.
The command itself runs on the current clock, which cannot be set from outside.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.events import parse_timestamp
from edge.pipeline.mapping import load_mappings
from edge.pipeline.pipeline import Pipeline
from edge.preview import preview, read_events
from edge.settings import load_settings
from tests.conftest import DATA, run_cli

GOLDEN = json.loads((DATA / "capi-golden.json").read_text())
CASES = GOLDEN["cases"]
LATEST_MS = max(parse_timestamp(case["input"]["timestamp"]) or 0 for case in CASES)
AN_HOUR_LATER = LATEST_MS / 1000 + 3600  # epoch seconds


def run_preview(text: str, env: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """`rokt-edge preview`'s document for `text` (as JSON, as printed) and whether every event
    was understood, an hour after the vectors' time."""
    settings = load_settings(env)
    pipeline = Pipeline(settings, load_mappings(settings.mappings))
    document, understood = preview(read_events(text), pipeline, now=AN_HOUR_LATER)
    return json.loads(json.dumps(document)), understood


def without_empty_objects(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_empty_objects(item) for key, item in value.items() if item != {}}
    if isinstance(value, list):
        return [without_empty_objects(item) for item in value]
    return value


def mappings_file(tmp_path: Path, hashing: dict[str, bool]) -> dict[str, str]:
    """The presets, with the case's hashing switches on the Send mapping."""
    if not hashing:
        return {}  # the built-in presets, untouched
    switches = "\n".join(f"{key} = {str(on).lower()}" for key, on in hashing.items())
    path = tmp_path / "mappings.toml"
    path.write_text(
        '[[mapping]]\nname = "Send"\npreset = "Send"\n[mapping.hashing]\n'
        f"{switches}\n\n"
        '[[mapping]]\nname = "Sync Audience"\npreset = "Sync Audience"\n'
    )
    return {"ROKT_EDGE_MAPPINGS": str(path)}


def batches_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    batches: list[dict[str, Any]] = []
    for request in document["requests"]:
        body = request["body"]
        batches.extend(body if isinstance(body, list) else [body])
    return batches


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_case_through_preview(case: dict[str, Any], tmp_path: Path) -> None:
    # Given the case's input event and hashing switches
    env = mappings_file(tmp_path, case["hashing"])

    # When a user previews it
    document, understood = run_preview(json.dumps(case["input"]), env)

    # Then preview succeeds and prints exactly the expected batches
    assert understood
    batches = batches_of(document)
    for batch in batches:
        assert len(batch.pop("source_request_id")) == 36
    assert without_empty_objects(batches) == without_empty_objects(case["expected"])
    if "expected_reason" in case:
        assert [skip["reason"] for skip in document["skipped"]] == [case["expected_reason"]]
    if not case["expected"]:
        assert document["requests"] == []
        assert document["skipped"], "an event that produces nothing must say why"


def test_all_cases_at_once_as_json_lines_produce_one_bulk_request() -> None:
    # Given every unhashed case as JSON lines
    cases = [case for case in CASES if not case["hashing"]]
    lines = "\n".join(json.dumps(case["input"]) for case in cases)

    # When previewed together
    document, understood = run_preview(lines, {})

    # Then the batches arrive in one /bulkevents request, in input order
    assert understood
    [request] = document["requests"]
    assert request["url"] == "https://inbound.mparticle.com/s2s/v2/bulkevents"
    expected = [batch for case in cases for batch in case["expected"]]
    for batch in request["body"]:
        batch.pop("source_request_id")
    assert without_empty_objects(request["body"]) == without_empty_objects(expected)


def test_source_request_id_is_stable_across_runs() -> None:
    # The first case's event, from an hour ago (one from 2024 would be expired by now)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    event = json.dumps({**CASES[0]["input"], "timestamp": an_hour_ago.isoformat()})
    first = json.loads(run_cli("preview", stdin=event).stdout)
    second = json.loads(run_cli("preview", stdin=event).stdout)
    assert (
        first["requests"][0]["body"]["source_request_id"]
        == (second["requests"][0]["body"]["source_request_id"])
    )
