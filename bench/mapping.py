"""Events per second through the pipeline on one core: triggers, field resolution, hashing on,
contract A batch building. A shop's funnel: most traffic is page views and other tracks that no
trigger matches; 10% are conversions (several times a real shop's share, to be conservative),
each with full, distinct personal data, all of it hashed (so no cache flatters the figure); 5%
are Engage audience identifies. The conversions-only rate is printed too.

    python bench/mapping.py [--events N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.events import Event, parse_event
from edge.pipeline.mapping import HASHABLE, parse_mappings
from edge.pipeline.pipeline import Outbound, Pipeline
from edge.settings import Settings

MAPPINGS = {
    "mapping": [
        {
            "name": "Send",
            "preset": "Send",
            "hashing": dict.fromkeys(HASHABLE, True),
            "custom_attributes": {"coupon": "$.properties.coupon"},
        },
        {"name": "Sync Audience", "preset": "Sync Audience"},
    ]
}


def conversion(n: int, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"msg-{n}",
        "timestamp": "2024-01-18T12:00:00.000Z",
        "userId": f"user-{n}",
        "anonymousId": f"anon-{n}",
        "properties": {
            "order_id": f"order-{n}",
            "revenue": round(rng.uniform(5, 500), 2),
            "currency": "usd",
            "coupon": "SAVE10",
            "email": f" Shopper.{n}@Example.com ",
            "first_name": "Jane",
            "last_name": f"Doe{n}",
            "phone": f"+1 (323) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
            "address": {"postal_code": f"{rng.randint(10000, 99999)}"},
            "gender": "Female",
            "birthday": "1990-05-15",
        },
        "context": {
            "ip": f"203.0.113.{n % 250}",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
            "page": {"url": f"https://shop.example/checkout?rtid=click-{n}", "search": ""},
        },
    }


def event_mix(count: int) -> list[Event]:
    rng = random.Random(7)
    events = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.10:
            raw = conversion(n, rng)
        elif roll < 0.60:
            raw = {"type": "page", "name": "Product", "messageId": f"p-{n}", "anonymousId": "a"}
        elif roll < 0.95:
            raw = {"type": "track", "event": "Product Viewed", "messageId": f"t-{n}"}
        else:
            raw = {
                "type": "identify",
                "messageId": f"i-{n}",
                "userId": f"user-{n}",
                "traits": {"email": f"s{n}@example.com", "vip": rng.random() < 0.5},
                "context": {
                    "personas": {"computation_key": "vip", "computation_class": "audience"}
                },
            }
        events.append(parse_event(raw))
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    pipeline = Pipeline(Settings(), parse_mappings(MAPPINGS, "bench"))
    events = event_mix(args.events)
    conversions = sum(1 for e in events if e.body.get("event") == "Order Completed")
    pipeline_process = pipeline.process
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        sent = 0
        for event in events:
            for outcome in pipeline_process(event):
                sent += isinstance(outcome, Outbound)
        elapsed = time.perf_counter() - started
        best = max(best, len(events) / elapsed)
    print(f"events: {len(events):,} ({conversions:,} conversions, hashing on); batches: {sent:,}")
    print(f"pipeline: {best:,.0f} events/s on one core (best of 3; goal >= 20,000)")
    only = [e for e in events if e.body.get("event") == "Order Completed"]
    started = time.perf_counter()
    for event in only:
        pipeline_process(event)
    print(f"conversions only: {len(only) / (time.perf_counter() - started):,.0f} events/s")


if __name__ == "__main__":
    main()
