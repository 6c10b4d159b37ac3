"""The Quix Streams side of the benchmark: the same three jobs as the Rust
engine (bench/src/peer.rs) and the Kafka Streams peer, in Quix Streams'
own idioms (StreamingDataFrame, group_by repartitioning, RocksDB state with
changelog topics, tumbling windows).

    python peer.py --bootstrap HOST:PORT --job stateless|stateful|windowed \
        --input T --output T --app-id ID --state-dir DIR [--eos]

Prints ``bench-first-consumed <unix ms>`` on stdout when the first record
reaches the dataframe (the harness's start of the clock) and runs until
SIGTERM.
"""

import argparse
import os
import signal
import sys
import threading
import time

from quixstreams import Application
from quixstreams.models.serializers import Serializer

# Drinks on the menu and their preparation time in seconds (bench/src/orders.rs).
MENU = {"Espresso": 30, "Latte": 60, "Cappuccino": 90, "Americano": 45}
PROCESSED_AT = "2026-11-25T16:00:01Z"

_first_seen = False


def mark_first(_value):
    """Prints the start-of-clock line once, on the first record."""
    global _first_seen
    if not _first_seen:
        _first_seen = True
        print(f"bench-first-consumed {int(time.time() * 1000)}", flush=True)


def is_valid(order):
    return (
        isinstance(order, dict)
        and bool(str(order.get("customer_name", "")).strip())
        and order.get("coffee_type") in MENU
    )


def enrich(order):
    return {
        "order_id": order["id"],
        "customer_name": order["customer_name"],
        "coffee_type": order["coffee_type"],
        "status": "processing",
        "processed_at": PROCESSED_AT,
        "preparation_time": MENU.get(order["coffee_type"], 0),
    }


def aggregate(order, state):
    stats = state.get("stats", None) or {"orders": 0, "preparation_seconds": 0}
    stats["orders"] += 1
    stats["preparation_seconds"] += MENU.get(order.get("coffee_type"), 0)
    state.set("stats", stats)
    return stats


class CountSerializer(Serializer):
    """Writes a window's count as decimal text, like the other systems."""

    def __call__(self, value, ctx):
        return str(value["n"]).encode()


def exit_with_parent():
    """A peer never outlives the harness that started it."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def main():
    exit_with_parent()
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--job", required=True, choices=["stateless", "stateful", "windowed"])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--state-dir", default="state")
    parser.add_argument("--eos", action="store_true")
    args = parser.parse_args()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.app_id,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        processing_guarantee="exactly-once" if args.eos else "at-least-once",
        loglevel="WARNING",
    )
    orders = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    sdf = app.dataframe(orders)
    sdf = sdf.update(mark_first)

    if args.job == "stateless":
        output = app.topic(args.output, key_serializer="str", value_serializer="json")
        sdf = sdf.filter(is_valid).apply(enrich).to_topic(output)
    elif args.job == "stateful":
        output = app.topic(args.output, key_serializer="str", value_serializer="json")
        sdf = sdf.filter(lambda o: isinstance(o, dict) and "customer_name" in o)
        sdf = sdf.group_by("customer_name", name="customer-stats")
        sdf = sdf.apply(aggregate, stateful=True).to_topic(output)
    else:
        output = app.topic(args.output, key_serializer="str", value_serializer=CountSerializer())
        sdf = sdf.filter(lambda o: isinstance(o, dict) and "coffee_type" in o)
        sdf = sdf.group_by("coffee_type", name="coffee-demand")
        sdf = sdf.tumbling_window(duration_ms=60_000, grace_ms=3_600_000).count().current()
        sdf = sdf.apply(
            lambda w, key, _ts, _headers: {"k": f"{key}@{w['start']}", "n": w["value"]},
            metadata=True,
        )
        sdf = sdf.to_topic(output, key=lambda v: v["k"])

    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
