"""Issue 12, defect 5: property-based fuzzing of the config loader.

Random bytes, random TOML documents in random encodings, deep nesting,
files far over the size limit, and the files a config names (credentials,
door registry) with random content and modes: check_config never raises,
and every problem is one line starting with the key path it is about or
with the file's own name. Bounded: a few hundred examples in all."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.site.config import check_config
from gateway.site.config.checker import one_line
from gateway.site.config.load import MAX_CONFIG_BYTES

KNOWN = ("meihua-ic", "turbine-evc", "door-controller")
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEYS = ("gateway", "id", "site", "state_dir", "language", "log_level", "mqtt", "host", "port", "client_id",
        "topic_prefix", "keepalive", "qos", "credentials_file", "tls", "ca_file", "cert_file", "key_file",
        "insecure", "outbox", "max_bytes", "max_age_days", "synchronous", "inflight", "bus", "name",
        "baudrate", "parity", "stopbits", "bytesize", "timeout_s", "retries", "gap", "max_registers",
        "backoff_max_s", "device", "unit", "model", "poll_interval_s", "enabled", "params", "doors",
        "pseudonym_key_file", "registry_csv", "history_days", "timezone", "owner_years", "reminder_hour")
FILES = ("cred", "cards.csv", "ca.pem", "sub", "state")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "gbk", "gb18030", "big5", "shift_jis", "latin-1",
             "cp1252", "koi8-r")

keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(FILES + KNOWN + ("zh", "en", "E", "/dev/ttyUSB0", "tcp://127.0.0.1:502", "x" * 300)),
    st.text(max_size=40))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
tables = st.dictionaries(keys, values, max_size=6)
documents = st.dictionaries(keys, st.one_of(tables, st.lists(tables, min_size=1, max_size=3), scalars),
                            max_size=6)
files = st.dictionaries(st.sampled_from(FILES), st.tuples(st.binary(max_size=300),
                                                          st.sampled_from([0o600, 0o640, 0o644, 0o000])),
                        max_size=3)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else "inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v)
    if isinstance(v, (int, str)):
        return str(v) if isinstance(v, int) else json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"


def to_toml(doc: dict) -> str:
    top = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list))]
    out = top[:]
    for k, v in doc.items():
        if isinstance(v, dict):
            out += [f"[{_key(k)}]"] + [f"{_key(kk)} = {_value(x)}" for kk, x in v.items()]
        elif isinstance(v, list):
            for entry in v:
                out += [f"[[{_key(k)}]]"] + [f"{_key(kk)} = {_value(x)}" for kk, x in entry.items()]
    return "\n".join(out) + "\n"


def _place(d: Path, given: dict) -> None:
    (d / "sub").mkdir()
    for name, (data, mode) in given.items():
        p = d / name
        if p.is_dir():
            continue
        p.write_bytes(data)
        p.chmod(mode)


def _assert_one_line_each(problems, path: Path, doc_keys=()) -> None:
    """doc_keys None: the document's keys are not known (bytes re-encoded),
    so only the shape "<where>: <what>" is checked."""
    assert isinstance(problems, list)
    shown = one_line(str(path))
    heads = {one_line(_key(k)) for k in doc_keys or ()} | {"gateway", "mqtt", "outbox", "doors"}
    for p in problems:
        assert isinstance(p, str) and p, problems
        assert len(p.splitlines()) == 1, p
        p.encode("utf-8")   # printable as it is: no lone surrogate
        if doc_keys is None:
            assert p.split(": ", 1)[0] and ": " in p, p
        else:
            assert p.startswith(shown + ": ") or any(p.startswith(h) for h in heads), p


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "edgegw.toml"
        path.write_bytes(data)
        problems = check_config(path, known_models=KNOWN)
        _assert_one_line_each(problems, path)
        assert problems, "random bytes made a valid config"


@SETTINGS
@given(documents, files, st.sampled_from(ENCODINGS))
def test_random_documents_in_random_encodings(doc, given, encoding):
    with tempfile.TemporaryDirectory() as d:
        _place(Path(d), given)
        path = Path(d) / "edgegw.toml"
        path.write_bytes(to_toml(doc).encode(encoding, errors="replace"))
        problems = check_config(path, known_models=KNOWN)
        _assert_one_line_each(problems, path, doc if encoding.startswith("utf-8") else None)


@SETTINGS
@given(documents, files)
def test_random_documents_and_the_files_they_name(doc, given):
    with tempfile.TemporaryDirectory() as d:
        _place(Path(d), given)
        path = Path(d) / "edgegw.toml"
        path.write_text(to_toml(doc), encoding="utf-8")
        _assert_one_line_each(check_config(path, known_models=KNOWN), path, doc)


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(1, 5000), st.lists(st.sampled_from(["[", "{a = ", "[1, "]), min_size=1, max_size=6),
       st.sampled_from(KEYS))
def test_deep_nesting(depth, pattern, key):
    openers = [pattern[i % len(pattern)] for i in range(depth)]
    closers = "".join("}" if o.startswith("{") else "]" for o in reversed(openers))
    inner = "".join(openers) + "1" + closers
    text = f'[gateway]\nid = "g"\n[mqtt]\n{key} = {inner}\n'
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "edgegw.toml"
        path.write_text(text, encoding="utf-8")
        problems = check_config(path, known_models=KNOWN)
        _assert_one_line_each(problems, path, {"mqtt": 1})
        assert problems


@settings(max_examples=12, deadline=None, database=None)
@given(st.sampled_from([MAX_CONFIG_BYTES - 1, MAX_CONFIG_BYTES, MAX_CONFIG_BYTES + 1, 10 * MAX_CONFIG_BYTES,
                        1 << 40]), st.binary(max_size=64))
def test_sizes_around_and_far_over_the_limit(size, head):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "edgegw.toml"
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(size)   # sparse: no disk is used
        problems = check_config(path, known_models=KNOWN)
        _assert_one_line_each(problems, path)
        if size > MAX_CONFIG_BYTES:
            assert problems == [f"{path}: is {size} bytes, more than a config file may be ({MAX_CONFIG_BYTES} bytes)"]
