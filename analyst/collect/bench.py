"""`moodcam-collect bench`: how many windows per second one collector stores.

    moodcam-collect bench --db URL [--windows N] [--batch N] [--cpu K] [--mqtt HOST:PORT]

Two figures, each for N made-up mood/2 windows from 100 devices:
- store: parse + validate + batched transactions into the database (the collector's own
  work, without the broker);
- mqtt (with --mqtt): the whole collector, the N windows queued beforehand in its persistent
  session on that broker (which must not cap the queue: max_queued_messages), from connect
  until the last one is committed and acknowledged.
--cpu pins this process to one core (the database server runs wherever it runs).
Each figure comes as windows per wall-clock second and per CPU-second of this process
(all its threads): on a shared, loaded machine the second is what one core of its own
sustains, as long as the database keeps up.
The database should be empty: the bench writes N windows into it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

from analyst.collect import synth
from analyst.collect.cli import host_port
from analyst.collect.parse import parse
from analyst.db import Store, WriteResult, connect

PREFIX = "moodcam"


def make_windows(n: int, stream: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        device, seq = f"bench-{i % 100:03d}", i // 100 + 1
        w = synth.mood(device, seq, stream=stream, content_id=f"promo-{seq % 3}",
                       viewers={"happy": i % 4, "sad": i % 2, "neutral": 1})
        out.append((f"{PREFIX}/{device}/mood", synth.encode(w)))
    return out


Rates = tuple[float, float]  # windows per wall second, windows per CPU second of this process


def bench_store(url: str, msgs: list[tuple[str, bytes]], batch: int) -> Rates:
    from datetime import UTC, datetime

    store = Store(connect(url))
    c0, t0 = time.process_time(), time.perf_counter()
    total = WriteResult()
    for i in range(0, len(msgs), batch):
        now = datetime.now(UTC)
        r = store.write([parse(t, p, PREFIX, now) for t, p in msgs[i:i + batch]])
        total.new += r.new
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    if total.new != len(msgs):
        raise SystemExit(f"stored {total.new} of {len(msgs)}: is the database empty?")
    return len(msgs) / dt, len(msgs) / cpu


def bench_mqtt(url: str, host: str, port: int, msgs: list[tuple[str, bytes]],
               batch: int) -> Rates:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from analyst.collect.collector import Collector, Settings

    settings = Settings(host=host, port=port, prefix=PREFIX, batch_max=batch,
                        receive_maximum=2 * batch, client_id=f"moodcam-bench-{os.getpid()}",
                        session_expiry_s=600)
    engine = connect(url)
    # 1. Create the collector's session, then leave: the broker queues for it from now on.
    first = Collector(settings, engine)
    first.start()
    if not first.connected.wait(10):
        raise SystemExit(f"cannot connect to the broker {host}:{port}")
    time.sleep(0.5)  # the SUBACK
    first.stopping.set()
    first.client.disconnect()
    first.client.loop_stop()
    # 2. Queue the windows as devices would (QoS 1).
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"moodcam-bench-pub-{os.getpid()}")
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect(host, port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=1) for t, p in msgs]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()
    # 3. Time the collector through the backlog.
    done = threading.Event()
    stored = [0]

    def on_batch(r: WriteResult) -> None:
        stored[0] += r.new
        if stored[0] >= len(msgs):
            done.set()

    col = Collector(settings, engine, on_batch=on_batch)
    runner = threading.Thread(target=col.run, daemon=True)
    c0, t0 = time.process_time(), time.perf_counter()
    runner.start()
    finished = done.wait(max(60.0, len(msgs) / 200))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    col.stop()
    runner.join(30)
    if not finished:
        raise SystemExit(f"only {stored[0]} of {len(msgs)} windows arrived: the broker "
                         "dropped the rest (mosquitto: max_queued_messages)")
    return len(msgs) / dt, len(msgs) / cpu


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="moodcam-collect bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://... (empty)")
    p.add_argument("--windows", type=int, default=20000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--cpu", type=int, help="pin the bench to this CPU core")
    p.add_argument("--mqtt", type=host_port, metavar="HOST:PORT",
                   help="also time the whole collector through this broker")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    msgs = make_windows(args.windows, "be4c000000000001")
    kind = "postgresql" if args.db.startswith("postgres") else "sqlite"
    wall, cpu = bench_store(args.db, msgs, args.batch)
    print(f"store {kind}: {args.windows} windows in batches of {args.batch}: "
          f"{wall:.0f} windows/s wall, {cpu:.0f} windows per CPU-second")
    if args.mqtt:
        host, port = args.mqtt
        msgs = make_windows(args.windows, "be4c000000000002")
        wall, cpu = bench_mqtt(args.db, host, port, msgs, args.batch)
        print(f"mqtt+store {kind}: {args.windows} windows queued on {host}:{port}: "
              f"{wall:.0f} windows/s wall, {cpu:.0f} windows per CPU-second")
    sys.stdout.flush()
    return 0
