"""`rokt-edge import`, run as a merchant runs it, with a running edge delivering to a fake Rokt."""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from edge.store.values import IdentityUpdate, Intake
from tests.conftest import run_cli
from tests.fake_capi import FakeCapi
from tests.live import LiveEdge, wait_for

ORDERS_MAP = """
[user_identities]
email = "email"
customerid = "customer_id"
other2 = "rokt_click_id"
[event]
timestamp_unixtime_ms = "ordered_at"
source_message_id = "order_id"
[custom_attributes]
conversiontype = "conversion_type"
confirmationref = "order_id"
amount = "total"
currency = ["currency", { value = "USD" }]
[user_attributes]
firstname = "first_name"
city = "city"
"""
HEADER = ["order_id", "email", "customer_id", "rokt_click_id", "ordered_at", "conversion_type",
          "total", "currency", "first_name", "city"]  # fmt: skip
NOW_MS = int(time.time() * 1000) - 3_600_000  # an hour ago: Rokt takes 30 days at most


def order_row(n: int) -> list[str]:
    return [f"o-{n}", f"buyer{n}@example.com", f"c-{n}", f"R-{n}", str(NOW_MS + n),
            "purchase", f"{n % 500}.99", "usd" if n % 2 else "", "Jane", "Sydney"]  # fmt: skip


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """The edge's store, as its first start made it (import refuses a store that is not there)."""
    path = tmp_path / "edge.db"
    SQLiteStore(path).close()
    return path


@pytest.fixture
def settings(database: Path, fake: FakeCapi) -> Settings:
    return Settings(
        api_key=fake.api_key, api_secret=fake.api_secret, rokt_url=fake.url,
        database_url=f"sqlite:///{database}", poll_interval=0.05, rate_limit=0,
    )  # fmt: skip


def env(settings: Settings) -> dict[str, str]:
    return {"ROKT_EDGE_DATABASE_URL": settings.database_url}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def delivered(fake: FakeCapi) -> list[dict[str, Any]]:
    return [batch for request in fake.requests() for batch in request.accepted]


def test_ten_thousand_rows_with_some_bad_ones_are_delivered_once(
    tmp_path: Path, settings: Settings, fake: FakeCapi
) -> None:
    # Given a warehouse export of 10,000 orders, 5 of them broken in different ways
    rows = [order_row(n) for n in range(10_000)]
    rows[10][4] = "yesterday"  # an unreadable timestamp (file row 12: the header is row 1)
    rows[99][5] = ""  # no conversion type
    rows[500] = rows[500][:4]  # a truncated record
    rows[7000][4] = "-5"  # a negative epoch
    rows[9999][5] = " "  # a blank conversion type
    export = write_csv(tmp_path / "orders.csv", rows)
    mapfile = write(tmp_path / "orders.toml", ORDERS_MAP)

    # When the merchant imports it while the edge runs
    with LiveEdge(settings):
        first = run_cli("import", str(export), "--map", str(mapfile), env=env(settings))

        # Then the bad rows are named by number, and every other row reaches Rokt
        assert first.returncode == 1, first.stderr
        named = [line.split(": ", 2)[1] for line in first.stderr.splitlines()]
        assert named == ["row 12", "row 101", "row 502", "row 7002", "row 10001"]
        assert "9,995 queued for delivery" in first.stdout
        assert "rokt-edge deliver" in first.stdout
        wait_for(lambda: len(fake.accepted_message_ids()) == 9_995, timeout=60)

        # And importing the same file again sends nothing new
        again = run_cli("import", str(export), "--map", str(mapfile), env=env(settings))
        assert again.returncode == 1
        assert "0 queued for delivery (9,995 more were already in the outbox" in again.stdout
    assert len(fake.accepted_message_ids()) == 9_995
    assert len(set(fake.accepted_message_ids())) == 9_995
    sample = next(b for b in delivered(fake) if b["user_identities"]["customerid"] == "c-1")
    assert sample["user_identities"] == {"email": "buyer1@example.com", "customerid": "c-1",
                                         "other2": "R-1"}  # fmt: skip
    assert sample["user_attributes"] == {"firstname": "Jane", "city": "Sydney"}
    assert sample["events"][0]["data"]["timestamp_unixtime_ms"] == NOW_MS + 1
    assert sample["events"][0]["data"]["custom_attributes"] == {
        "conversiontype": "purchase", "confirmationref": "o-1", "amount": 1.99, "currency": "USD",
    }  # fmt: skip


def test_a_dry_run_prints_what_would_be_sent_and_stores_nothing(
    tmp_path: Path, settings: Settings, database: Path
) -> None:
    export = write_csv(tmp_path / "orders.csv", [order_row(1), order_row(2)])
    mapfile = write(tmp_path / "orders.toml", ORDERS_MAP)

    result = run_cli("import", str(export), "--map", str(mapfile), "--dry-run", env=env(settings))

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["dry_run"] is True
    assert [r["url"].rsplit("/", 1)[1] for r in document["requests"]] == ["bulkevents"]
    assert len(document["requests"][0]["body"]) == 2
    assert document["invalid"] == []
    with sqlite3.connect(database) as stored:
        assert stored.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


AUDIENCE_MAP = """
[user_identities]
email = "email"
[audience]
name = "segment"
membership = "member"
"""


def test_audience_rows_become_audience_updates(tmp_path: Path, settings: Settings) -> None:
    lines = [
        {"email": "a@example.com", "segment": "vip", "member": "yes"},
        {"email": "b@example.com", "segment": "vip", "member": False},
        {"email": "c@example.com", "segment": "vip", "member": "perhaps"},
        {"email": "d@example.com"},
    ]
    export = write(tmp_path / "vip.jsonl", "\n".join(map(json.dumps, lines)) + "\n")
    mapfile = write(tmp_path / "vip.toml", AUDIENCE_MAP)

    result = run_cli("import", str(export), "--map", str(mapfile), "--dry-run", env=env(settings))

    assert result.returncode == 1
    document = json.loads(result.stdout)
    batches = document["requests"][0]["body"]
    updates = [(b["user_identities"]["email"], b["events"][0]["data"]["custom_attributes"],
                b["user_attributes"]) for b in batches]  # fmt: skip
    assert updates == [
        ("a@example.com", {"audience_name": "vip", "status": "add"}, {"segment_vip": True}),
        ("b@example.com", {"audience_name": "vip", "status": "drop"}, {"segment_vip": False}),
    ]
    assert document["invalid"] == [
        {"row": 3, "error": "audience.membership: 'perhaps' is not true or false"},
        {"row": 4, "error": "no conversion type and no audience name"},
    ]


def test_imported_rows_are_stitched_and_de_duplicated_like_server_events(
    tmp_path: Path, settings: Settings, database: Path
) -> None:
    # Given a browser that showed click R-BROWSER for customer c-1, and order o-2 already
    # stored by an earlier source (here an earlier export)
    store = SQLiteStore(database)
    store.put_sync(
        Intake(identities=[IdentityUpdate(("u:c-1",), "R-BROWSER", 1e12, "198.51.100.7", "UA/1")])
    )
    store.close()
    header = [*HEADER, "ref"]  # the confirmation ref apart from the message id column
    write_csv(tmp_path / "earlier.csv", [[*order_row(2), "o-2"]], header)
    rows = [[*order_row(1), "o-1"], [*order_row(2), "o-2"]]
    rows[0][3] = ""  # no click id in the warehouse for o-1
    rows[1][0] = "o-2-warehouse-copy"  # the same order o-2 under another message id
    export = write_csv(tmp_path / "orders.csv", rows, header)
    mapfile = write(tmp_path / "orders.toml", ORDERS_MAP.replace(
        'confirmationref = "order_id"', 'confirmationref = "ref"'))  # fmt: skip
    run_cli("import", str(tmp_path / "earlier.csv"), "--map", str(mapfile), env=env(settings))

    # When the warehouse export is imported
    result = run_cli("import", str(export), "--map", str(mapfile), env=env(settings))

    # Then o-1 carries the browser's click, IP and user agent, and o-2 is a duplicate
    assert result.returncode == 0, result.stderr
    assert "1 queued for delivery" in result.stdout
    assert "1 skipped: duplicate" in result.stdout
    with sqlite3.connect(database) as db:
        [body] = db.execute(
            "SELECT body FROM bodies JOIN outbox USING (id) WHERE message_id = 'o-1'"
        ).fetchone()
        skips = db.execute("SELECT message_id, reason FROM skipped").fetchall()
    batch = json.loads(body)
    assert batch["user_identities"]["other2"] == "R-BROWSER"
    assert (batch["ip"], batch["device_info"]["http_header_user_agent"]) == ("198.51.100.7", "UA/1")
    assert skips == [("o-2-warehouse-copy", "duplicate")]


def test_a_row_sees_the_click_an_earlier_row_of_the_same_file_showed(
    tmp_path: Path, settings: Settings, database: Path
) -> None:
    # Given an export where customer c-9's first order carries the click id and the second,
    # an hour later, does not
    first, second = order_row(9), order_row(10)
    second[2], second[3] = "c-9", ""
    export = write_csv(tmp_path / "orders.csv", [first, second])
    mapfile = write(tmp_path / "orders.toml", ORDERS_MAP)

    # When it is imported
    result = run_cli("import", str(export), "--map", str(mapfile), env=env(settings))

    # Then both orders carry the click, as they would if sent in two requests
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as db:
        bodies = [json.loads(body) for (body,) in db.execute("SELECT body FROM bodies")]
    assert [b["user_identities"]["other2"] for b in bodies] == ["R-9", "R-9"]


@pytest.mark.parametrize(
    ("map_text", "message"),
    [
        ("[user_identities]\nemail = 'email'\n", "nothing to send"),
        ("[custom_attributes]\nconversiontype = 'x'\n[device_info]\nidfa = 'a'\n",
         "device_info.idfa: unknown field"),
        ("[custom_attributes]\nconversiontype = 'x'\nconfirmationref = 3\n",
         "write a column name"),
        ("[custom_attributes]\nconversiontype = 'x'\n[user_attributes]\nsegment_x = 'y'\n",
         "standard attribute"),
        ("[custom_attributes]\nconversiontype = 'nope'\n", "column 'nope' (mapped to "
         "custom_attributes.conversiontype) is not in the header"),
        ("[custom_attributes\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_map_that_cannot_be_used_stops_before_any_row(
    tmp_path: Path, settings: Settings, database: Path, map_text: str, message: str
) -> None:
    export = write_csv(tmp_path / "orders.csv", [order_row(1)], [*HEADER[:5], "x", *HEADER[6:]])
    result = run_cli("import", str(export), "--map", str(write(tmp_path / "m.toml", map_text)),
                     env=env(settings))  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_a_missing_file_and_a_forced_progress_bar(tmp_path: Path, settings: Settings) -> None:
    mapfile = write(tmp_path / "orders.toml", ORDERS_MAP)
    missing = run_cli("import", str(tmp_path / "nope.csv"), "--map", str(mapfile))
    assert missing.returncode == 2
    assert "No such file" in missing.stderr

    export = write_csv(tmp_path / "orders.csv", [order_row(n) for n in range(50)])
    shown = run_cli("import", str(export), "--map", str(mapfile), "--progress", env=env(settings))
    assert shown.returncode == 0
    assert "orders.csv" in shown.stderr
    assert "B/s" in shown.stderr or "it/s" in shown.stderr or "%" in shown.stderr


def test_a_json_line_nested_too_deep_is_an_invalid_row_not_a_crash(
    tmp_path: Path, settings: Settings
) -> None:
    good = {"email": "a@example.com", "segment": "vip"}
    text = json.dumps(good) + "\n" + "[" * 100_000 + "\n" + json.dumps(good) + "\n"
    export = write(tmp_path / "vip.jsonl", text)
    mapfile = write(tmp_path / "vip.toml", AUDIENCE_MAP)

    result = run_cli("import", str(export), "--map", str(mapfile), "--dry-run", env=env(settings))

    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert len(document["requests"][0]["body"]) == 2
    assert [row["row"] for row in document["invalid"]] == [2]
    assert document["invalid"][0]["error"].startswith("not JSON")


def xlsx(path: Path, rows: list[list[str]]) -> Path:
    """A workbook as Excel saves one: a ZIP archive of XML parts (enough of them to be one)."""
    cells = "".join(
        "<row>" + "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in row) + "</row>"
        for row in rows
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as workbook:
        workbook.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        workbook.writestr("xl/workbook.xml", '<?xml version="1.0"?><workbook/>')
        workbook.writestr("xl/worksheets/sheet1.xml", f"<worksheet><sheetData>{cells}</sheetData>")
    return path


@pytest.mark.parametrize(
    ("name", "make", "kind"),
    [
        ("orders.xlsx", lambda p: xlsx(p, [HEADER, order_row(1)]), "a ZIP archive (an Excel .xlsx"),
        ("orders.csv.gz", lambda p: p.write_bytes(gzip.compress(b"order_id\n1\n")), "gzip"),
        ("orders.csv", lambda p: p.write_bytes("order_id\n1\n".encode("utf-16")), "UTF-16 text"),
    ],
    ids=["xlsx", "gzip", "utf-16"],
)
def test_a_spreadsheet_or_other_file_that_is_not_text_is_refused_saying_what_it_is(
    tmp_path: Path, settings: Settings, database: Path, name: str, make: Any, kind: str
) -> None:
    # Given an export saved as a workbook (or compressed, or as UTF-16), not as CSV
    export = tmp_path / name
    make(export)
    mapfile = write(tmp_path / "orders.toml", ORDERS_MAP)

    # When the merchant imports it
    result = run_cli("import", str(export), "--map", str(mapfile), env=env(settings))

    # Then it is refused at once, saying what the file is and what to export instead, without
    # printing any of its bytes, and nothing is stored
    assert result.returncode == 2
    assert result.stderr.startswith(f"rokt-edge import: {export}: not CSV or JSON lines: it is ")
    assert kind in result.stderr
    assert result.stderr.rstrip().endswith("export it as CSV (UTF-8) or JSON lines")
    assert result.stderr.rstrip("\n").isprintable()  # one line, none of the file's bytes
    assert "Content_Types" not in result.stderr
    assert result.stdout == ""
    with sqlite3.connect(database) as stored:
        assert stored.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
