import re
import time
from datetime import datetime, timezone

from gateway.site import clock


ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_utc_now_iso_format_and_value():
    before = datetime.now(timezone.utc)
    s = clock.utc_now_iso()
    after = datetime.now(timezone.utc)
    assert ISO_RE.match(s), s
    parsed = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    # the string truncates to milliseconds, so it may sit up to 1 ms before `before`
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed <= after


def test_probe_answers_a_bool_from_a_known_source():
    synced, source = clock._probe()
    assert isinstance(synced, bool)
    assert source in ("adjtimex", "timesyncd", "unknown")


def test_clock_synced_is_cached():
    clock._cache = None
    first = clock.clock_synced()
    stamp = clock._cache
    assert isinstance(first, bool)
    for _ in range(1000):
        assert clock.clock_synced() is first
    # no re-probe inside the cache window: the cache entry is the same object
    assert clock._cache is stamp


def test_clock_synced_refreshes_after_the_cache_window():
    clock.clock_synced()
    t, value, source = clock._cache
    clock._cache = (t - clock._CACHE_S - 1.0, value, source)
    clock.clock_synced()
    assert clock._cache[0] > t - 1.0


def test_clock_synced_is_cheap():
    clock.clock_synced()
    t0 = time.perf_counter()
    for _ in range(10_000):
        clock.clock_synced()
    assert time.perf_counter() - t0 < 0.5


def test_monotonic_is_time_monotonic():
    assert clock.monotonic is time.monotonic
