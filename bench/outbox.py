"""Outbox benchmark (a script, not a test): python bench/outbox.py [--dir D] [--quick]

Measures what the durability design costs on this machine:
  * durable enqueues per second, polls of 3 messages per put, synchronous FULL and NORMAL
  * bytes written to disk per message (/proc/self/io write_bytes)
  * drain rate to a Mosquitto started here on 127.0.0.1 (QoS 1, acked, deleted)
  * RSS before and after a 1,000,000-message backlog, and what opening it costs
  * the same enqueue figure for a naive TinyDB-backed queue (insert per message)
  * what the event loop sees (phase "loop"): buses putting polls through the
    group commit and a consumer taking batches and acking, at a fixed rate;
    the loop's lag, the time the loop spends in each put, CPU per message.
    --fsync-ms D delays every fsync by D ms (bench/slowsync.c, an SD card).

Each phase runs in a fresh interpreter so one phase's allocations do not
colour another's RSS. Results are printed and written as JSON (--json).
"""

from __future__ import annotations

import argparse
import gc as pygc
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's gateway, not an installed one

from gateway.deliver.outbox import Message, Outbox, Priority  # noqa: E402
from gateway.site.state import AtomicJSONStorage  # noqa: E402
from tests.support import free_port  # noqa: E402

MOSQUITTO = "/usr/sbin/mosquitto"
TARGETS = {"enqueue_full_msgs_s": 2000, "drain_msgs_s": 5000, "rss_growth_1m_mb": 20}


def payload(i: int) -> dict:
    # the size of a real telemetry payload (about 170 bytes of JSON)
    return {"ts": "2026-11-23T15:36:11.123Z", "device": f"gm-{i % 32:02d}", "model": "turbine-evc",
            "values": {"volume_std_m3": 123456.789 + i, "flow_m3h": 12.5, "temp_c": 18.2,
                       "press_kpa": 101.3, "battery_v": 3.61}, "quality": "good"}


def poll(i: int):

    dev = f"gm-{i % 32:02d}"
    return [Message(f"site/{dev}/telemetry", payload(i), Priority.TELEMETRY),
            Message(f"site/{dev}/telemetry", payload(i + 1), Priority.TELEMETRY),
            Message(f"site/{dev}/state", {"online": True, "i": i}, Priority.STATE, retain=True)]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_bytes() -> int:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def files_size(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


# ------------------------------------------------------------------ phases


def phase_enqueue(d: str, sync: str, seconds: float) -> dict:

    path = os.path.join(d, f"enq-{sync}.db")
    ob = Outbox.open(path, synchronous=sync)
    ob.put(poll(0))  # schema and first pages out of the way
    w0 = write_bytes()
    t0 = time.perf_counter()
    puts = 0
    while time.perf_counter() - t0 < seconds:
        ob.put(poll(puts))
        puts += 1
    dt = time.perf_counter() - t0
    w1 = write_bytes()
    stats = ob.stats()
    ob.close()
    msgs = puts * 3
    return {"sync": sync, "puts": puts, "seconds": round(dt, 2), "puts_s": round(puts / dt),
            "msgs_s": round(msgs / dt), "stored_msgs_s": round(stats["backlog_msgs"] / dt),
            "coalesced": stats["coalesced"],
            "write_bytes_per_msg": round((w1 - w0) / msgs) if w0 >= 0 else None}


def phase_drain(d: str, count: int, window: int) -> dict:
    import paho.mqtt.client as mqtt


    port = free_port()
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                f"max_inflight_messages 0\nmax_queued_messages 0\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        path = os.path.join(d, "drain.db")
        ob = Outbox.open(path, inflight=window)
        for i in range(0, count, 1000):
            ob.put([Message(f"site/gm-{k % 32:02d}/telemetry", payload(k), Priority.TELEMETRY)
                    for k in range(i, min(count, i + 1000))])

        acks: queue.SimpleQueue = queue.SimpleQueue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-drain", protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(window)
        c.max_queued_messages_set(0)
        c.on_publish = lambda cl, u, mid, rc, p: acks.put(mid)
        up: queue.SimpleQueue = queue.SimpleQueue()
        c.on_connect = lambda cl, u, f, rc, p: up.put(rc)
        c.connect("127.0.0.1", port)
        c.loop_start()
        up.get(timeout=5)

        mids: dict[int, int] = {}
        done = 0
        batches = 0
        t0 = time.perf_counter()
        while done < count:
            # keep the window full; a refill of a few messages is still one
            # seq transaction, so refill only once a tenth of it is free
            if window - len(mids) >= max(1, window // 10):
                batch = ob.next_batch(window - len(mids))
                if batch:
                    batches += 1
                for p in batch:
                    mids[c.publish(p.topic, p.payload, qos=1).mid] = p.id
            mid = acks.get(timeout=10)
            ob.ack(mids.pop(mid))
            done += 1
            while True:
                try:
                    mid = acks.get_nowait()
                except queue.Empty:
                    break
                ob.ack(mids.pop(mid))
                done += 1
        ob.flush()
        dt = time.perf_counter() - t0
        left = ob.stats()["backlog_msgs"]
        c.loop_stop()
        c.disconnect()
        ob.close()
    finally:
        broker.terminate()
        broker.wait(5)
    return {"msgs": count, "window": window, "seconds": round(dt, 2), "msgs_s": round(count / dt),
            "seq_transactions": batches, "backlog_after": left}


def phase_backlog(d: str, count: int) -> dict:

    path = os.path.join(d, "backlog.db")
    rss0 = rss_mb()
    ob = Outbox.open(path, synchronous="NORMAL", max_bytes=None)
    rss_open = rss_mb()
    t0 = time.perf_counter()
    step = 5_000
    for i in range(0, count, step):
        ob.put([Message(f"site/gm-{k % 32:02d}/telemetry", payload(k), Priority.TELEMETRY)
                for k in range(i, min(count, i + step))])
    t_fill = time.perf_counter() - t0
    rss_full = rss_mb()
    t1 = time.perf_counter()
    for _ in range(100):
        b = ob.next_batch(100)
        for p in b:
            ob.ack(p.id)
    ob.flush()
    t_batches = (time.perf_counter() - t1) / 100
    t2 = time.perf_counter()
    stats = ob.stats()
    t_stats = time.perf_counter() - t2
    rss_used = rss_mb()
    ob.close()
    size = files_size(path)
    t3 = time.perf_counter()
    ob = Outbox.open(path, synchronous="NORMAL", max_bytes=None)
    t_reopen = time.perf_counter() - t3
    rss_reopen = rss_mb()
    ob.close()
    return {"msgs": count, "fill_seconds": round(t_fill, 1), "fill_msgs_s": round(count / t_fill),
            "rss_before_mb": round(rss0, 1), "rss_open_mb": round(rss_open, 1),
            "rss_after_fill_mb": round(rss_full, 1), "rss_after_draining_mb": round(rss_used, 1),
            "rss_after_reopen_mb": round(rss_reopen, 1),
            "rss_growth_mb": round(max(rss_full, rss_used) - rss_open, 1),
            "next_batch_ms": round(t_batches * 1000, 2), "stats_ms": round(t_stats * 1000, 2),
            "reopen_with_quick_check_s": round(t_reopen, 2),
            "disk_bytes": size, "disk_bytes_per_msg": round(size / count),
            "backlog_msgs": stats["backlog_msgs"], "backlog_payload_bytes": stats["backlog_bytes"]}


def phase_tinydb(d: str, count: int, atomic: bool) -> dict:
    from tinydb import TinyDB


    path = os.path.join(d, f"naive-{'atomic' if atomic else 'json'}.json")
    db = TinyDB(path, storage=AtomicJSONStorage) if atomic else TinyDB(path)
    q = db.table("queue")
    w0 = write_bytes()
    t0 = time.perf_counter()
    for i in range(count):
        q.insert({"topic": "site/gm-01/telemetry", "payload": payload(i), "seq": None})
    dt = time.perf_counter() - t0
    w1 = write_bytes()
    db.close()
    return {"storage": "AtomicJSONStorage (fsync)" if atomic else "JSONStorage (no fsync)",
            "msgs": count, "seconds": round(dt, 2), "msgs_s": round(count / dt),
            "write_bytes_per_msg": round((w1 - w0) / count) if w0 >= 0 else None}


def phase_loop(d: str, sync: str, seconds: float, polls_s: int) -> dict:
    """The event loop's view: 5 buses put polls of 2 messages (telemetry and
    retained state) through the group commit, a consumer takes batches of 100
    and acks them at once (a broker on a fast link). With the store's thread
    (gateway/deliver/writer.py) the loop only hands work over; without it
    (before issue 13) every commit and seq assignment ran here."""
    import asyncio

    from gateway.deliver.commit import GroupCommit
    try:
        from gateway.deliver.writer import StoreWriter
    except ImportError:   # the code before the store's thread, for the "before" figures
        StoreWriter = None  # noqa: N806

    path = os.path.join(d, f"loop-{sync}.db")
    lags: list[float] = []
    put_s: list[float] = []
    done = {"msgs": 0}

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        if StoreWriter is not None:
            ob = StoreWriter(lambda: Outbox.open(path, synchronous=sync), loop)
        else:
            ob = Outbox.open(path, synchronous=sync)
        wake = asyncio.Event()
        gc = GroupCommit(ob, wake.set)
        real_flush = gc.flush

        def timed_flush() -> None:
            t = time.perf_counter()
            real_flush()
            put_s.append(time.perf_counter() - t)
        gc.flush = timed_flush
        stop = time.monotonic() + seconds

        async def bus(b: int) -> None:
            every = 5 / polls_s
            i = b
            nxt = time.monotonic()
            while time.monotonic() < stop:
                dev = f"gm-{i % 500:03d}"
                t = time.perf_counter()
                gc.add([Message(f"site/{dev}/telemetry", payload(i), Priority.TELEMETRY),
                        Message(f"site/{dev}/state", {"online": True, "i": i}, Priority.STATE, retain=True)],
                       None)
                put_s.append(time.perf_counter() - t)
                i += 5
                nxt += every
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))

        async def consumer() -> None:
            while time.monotonic() < stop + 1:
                try:
                    await asyncio.wait_for(wake.wait(), 0.1)
                except TimeoutError:
                    pass
                wake.clear()
                while True:
                    batch = ob.next_batch(100)
                    if asyncio.isfuture(batch):
                        batch = await batch
                    if not batch:
                        break
                    for p in batch:
                        ob.ack(p.id)
                    done["msgs"] += len(batch)

        async def sampler() -> None:
            while time.monotonic() < stop:
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - t - 0.005)

        pauses: list[float] = []
        begun: list[float] = []

        def on_gc(phase: str, info: dict) -> None:
            if info.get("generation") == 2:
                if phase == "start":
                    begun.append(time.perf_counter())
                elif begun:
                    pauses.append(time.perf_counter() - begun.pop())
        pygc.callbacks.append(on_gc)   # full collections' pauses, to tell them from the store's
        cpu0 = time.process_time()
        await asyncio.gather(*(bus(b) for b in range(5)), consumer(), sampler())
        cpu = time.process_time() - cpu0
        pygc.callbacks.remove(on_gc)
        done["gc2_ms"] = [round(x * 1000, 1) for x in pauses]
        ob.close()
        return {"cpu_s": cpu}

    r = asyncio.run(main())

    def q(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000, 2) if xs else float("nan")
    return {"sync": sync, "polls_s": polls_s, "seconds": seconds, "msgs": done["msgs"],
            "cpu_ms_per_msg": round(r["cpu_s"] / max(1, done["msgs"]) * 1000, 3),
            "lag_ms": {"p50": q(lags, 50), "p99": q(lags, 99), "p99.9": q(lags, 99.9), "max": q(lags, 100)},
            "loop_ms_per_put": {"p50": q(put_s, 50), "p99": q(put_s, 99), "max": q(put_s, 100)},
            "store_thread": StoreWriter is not None, "gc2_ms": done.get("gc2_ms", [])}


PHASES: dict[str, Any] = {"enqueue": phase_enqueue, "drain": phase_drain, "backlog": phase_backlog,
                          "tinydb": phase_tinydb, "loop": phase_loop}


def run_phase(name: str, *args, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--phase", name, json.dumps(args)],
                         cwd=ROOT, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"phase {name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/var/tmp", help="where the stores go (use the real disk, not tmpfs)")
    ap.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only", help="run only these phases (comma-separated: enqueue,drain,backlog,tinydb,loop)")
    ap.add_argument("--fsync-ms", type=float, default=20.0,
                    help="the loop phase's slow-disk run: every fsync sleeps this long (0: skip it)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase:
        print(json.dumps(PHASES[a.phase](*json.loads(a.args))))
        return

    d = tempfile.mkdtemp(prefix="edgegw-bench-", dir=a.dir)
    quick = a.quick
    try:
        res: dict = {"machine": {"python": sys.version.split()[0], "cpus": os.cpu_count(), "dir": a.dir}}
        import sqlite3

        res["machine"]["sqlite"] = sqlite3.sqlite_version
        secs = 1.0 if quick else 4.0
        only = set(a.only.split(",")) if a.only else set(PHASES)
        if "enqueue" in only:
            res["enqueue_full"] = run_phase("enqueue", d, "FULL", secs)
            res["enqueue_normal"] = run_phase("enqueue", d, "NORMAL", secs)
        if "drain" in only and os.path.exists(MOSQUITTO):
            res["drain"] = run_phase("drain", d, 5_000 if quick else 50_000, 100)
            res["drain_window_500"] = run_phase("drain", d, 5_000 if quick else 50_000, 500)
        if "backlog" in only:
            res["backlog"] = run_phase("backlog", d, 100_000 if quick else 1_000_000)
        if "tinydb" in only:
            res["tinydb_naive"] = run_phase("tinydb", d, 500 if quick else 2_000, False)
            res["tinydb_atomic"] = run_phase("tinydb", d, 200 if quick else 500, True)
        if "loop" in only:
            res["loop"] = run_phase("loop", d, "FULL", 3.0 if quick else 10.0, 500)
            if a.fsync_ms:
                so = os.path.join(d, "slowsync.so")
                subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", so,
                                os.path.join(ROOT, "bench", "slowsync.c"), "-ldl"], check=True)
                env = dict(os.environ, LD_PRELOAD=so, SLOWSYNC_MS=str(int(a.fsync_ms)))
                res["loop_slow_disk"] = run_phase("loop", d, "FULL", 3.0 if quick else 10.0, 500, env=env)
                res["loop_slow_disk"]["fsync_ms"] = a.fsync_ms
    finally:
        shutil.rmtree(d, ignore_errors=True)

    print(f"machine: {res['machine']}")
    ef, en, bl = res.get("enqueue_full"), res.get("enqueue_normal"), res.get("backlog")
    if ef and en:
        print(f"durable enqueue, FULL  : {ef['msgs_s']:>8} msgs/s ({ef['puts_s']} puts/s of 3), "
              f"{ef['write_bytes_per_msg']} B written/msg")
        print(f"durable enqueue, NORMAL: {en['msgs_s']:>8} msgs/s ({en['puts_s']} puts/s of 3), "
              f"{en['write_bytes_per_msg']} B written/msg")
    for k in ("drain", "drain_window_500"):
        if k in res:
            r = res[k]
            print(f"drain to Mosquitto     : {r['msgs_s']:>8} msgs/s (QoS 1, acked, window {r['window']}, "
                  f"{r['msgs']} msgs, backlog after {r['backlog_after']})")
    if bl:
        print(f"backlog {bl['msgs']:,} msgs : RSS {bl['rss_open_mb']} MB -> {bl['rss_after_fill_mb']} MB "
              f"(growth {bl['rss_growth_mb']} MB); {bl['disk_bytes_per_msg']} B on disk/msg; "
              f"next_batch {bl['next_batch_ms']} ms; reopen (quick_check) {bl['reopen_with_quick_check_s']} s")
    for k in ("tinydb_naive", "tinydb_atomic"):
        if k in res:
            r = res[k]
            print(f"naive TinyDB queue     : {r['msgs_s']:>8} msgs/s ({r['storage']}, {r['msgs']} inserts, "
                  f"{r['write_bytes_per_msg']} B written/msg)")
    for k in ("loop", "loop_slow_disk"):
        if k in res:
            r = res[k]
            where = f"fsync +{r['fsync_ms']:.0f} ms" if "fsync_ms" in r else "this disk"
            who = "store thread" if r["store_thread"] else "on the loop"
            print(f"event loop, {where:<13}: {r['polls_s']} polls/s, {r['msgs']} msgs taken; lag p50/p99/p99.9/max "
                  f"{r['lag_ms']['p50']}/{r['lag_ms']['p99']}/{r['lag_ms']['p99.9']}/{r['lag_ms']['max']} ms; "
                  f"loop time per put p50/p99/max {r['loop_ms_per_put']['p50']}/{r['loop_ms_per_put']['p99']}/"
                  f"{r['loop_ms_per_put']['max']} ms; CPU {r['cpu_ms_per_msg']} ms/msg ({who}); "
                  f"full GC pauses {r.get('gc2_ms')} ms")
    print("targets:")
    ratios = {
        "enqueue FULL >= 2,000 msgs/s": ef["msgs_s"] / TARGETS["enqueue_full_msgs_s"] if ef else None,
        "drain >= 5,000 msgs/s": res["drain"]["msgs_s"] / TARGETS["drain_msgs_s"] if "drain" in res else None,
        "RSS growth < 20 MB for 1M": TARGETS["rss_growth_1m_mb"] / max(bl["rss_growth_mb"], 0.1) if bl else None,
    }
    for name, r in ratios.items():
        if r is None:
            print(f"  {name}: not measured")
        else:
            print(f"  {name}: {r:.2f}x target {'OK' if r >= 1 else 'MISSED'}")
    res["ratios"] = ratios
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
