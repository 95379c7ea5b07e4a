"""Site configuration: the case folders, defaults, paths and credentials.

Each folder under config_cases/ holds an edgegw.toml and, for an invalid
config, expected.err: the exact problems, one per line, in file order.
"{dir}" in expected.err stands for the case folder, because problems about
files name the resolved path. Cases are copied to a temp folder with fixed
modes (files under secret/ 0600, the rest 0644) so the world-readable check
does not depend on the umask of whoever checked the repo out.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import tomllib
from pathlib import Path

import pytest

from gateway.site import config as cfgmod
from gateway.site.config.load import _main
from gateway.site.config import BusCfg, Config, ConfigError, DeviceCfg, check_config, load_config


HERE = Path(__file__).parent
CASES = HERE / "config_cases"
ROOT = HERE.parent.parent
KNOWN = ("meihua-ic", "turbine-evc")
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if (p / "edgegw.toml").is_file())


def _place(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for f in dst.rglob("*"):
        if f.is_file():
            f.chmod(0o600 if "secret" in f.relative_to(dst).parts else 0o644)
    return dst


def _write(tmp_path: Path, text: str, name: str = "edgegw.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("case", CASE_NAMES)
def test_case(case, tmp_path):
    d = _place(CASES / case, tmp_path / case)
    err = d / "expected.err"
    expected = ([line.replace("{dir}", str(d)) for line in err.read_text("utf-8").splitlines()
                 if line.strip()] if err.exists() else [])
    assert check_config(d / "edgegw.toml", known_models=KNOWN) == expected
    if expected:
        with pytest.raises(ConfigError) as info:
            load_config(d / "edgegw.toml", known_models=KNOWN)
        assert info.value.problems == expected
        assert str(info.value) == "\n".join(expected)
    else:
        assert isinstance(load_config(d / "edgegw.toml", known_models=KNOWN), Config)


def test_there_are_cases():
    assert {"valid-minimal", "valid-full", "many-problems"} <= set(CASE_NAMES)


# --------------------------------------------------------------------------- whole files

def test_missing_file_is_one_problem(tmp_path):
    p = tmp_path / "nope.toml"
    assert check_config(p) == [f"{p}: file not found"]
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.problems == [f"{p}: file not found"]


def test_folder_instead_of_file(tmp_path):
    assert check_config(tmp_path) == [f"{tmp_path}: is a folder, expected a TOML file"]


def test_not_utf8(tmp_path):
    p = tmp_path / "edgegw.toml"
    p.write_bytes(b'[gateway]\nid = "\xff"\n')
    assert check_config(p) == [f"{p}: is not UTF-8 text (bad byte at offset 16)"]


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "edgegw.toml"
    p.write_bytes('\ufeff[gateway]\nid = "site-001"\n'.encode("utf-8"))
    assert check_config(p) == []


def test_empty_file_only_misses_gateway(tmp_path):
    p = _write(tmp_path, "")
    assert check_config(p) == ['gateway: required table is missing (add [gateway] with id = "...")']


# --------------------------------------------------------------------------- defaults

def test_defaults(tmp_path):
    c = load_config(_write(tmp_path, '[gateway]\nid = "site-001"\n'))
    assert c.path == tmp_path / "edgegw.toml"
    assert c.gateway.id == "site-001"
    assert c.gateway.site == ""
    assert c.gateway.state_dir == Path("/var/lib/edgegw")
    assert c.gateway.language == "en"
    assert c.gateway.log_level == "info"
    m = c.mqtt
    assert (m.host, m.port, m.client_id, m.topic_prefix, m.keepalive, m.qos) == (
        "127.0.0.1", 1883, "edgegw-site-001", "edgegw", 30, 1)
    assert m.username is None and m.password is None and m.tls is None
    assert (c.outbox.max_bytes, c.outbox.max_age_days, c.outbox.synchronous, c.outbox.inflight) == (
        268435456, 30.0, "full", 100)
    assert c.buses == () and c.devices == () and c.doors == {}


def test_bus_and_device_defaults(tmp_path):
    c = load_config(_write(tmp_path, """
[gateway]
id = "g"
[[bus]]
name = "rs485-1"
port = "/dev/ttyUSB0"
[[bus]]
name = "tcp-1"
port = "tcp://[2001:db8::5]"
[[device]]
name = "fm-01"
bus = "rs485-1"
unit = 1
model = "turbine-evc"
"""))
    assert c.buses[0] == BusCfg(
        name="rs485-1", kind="serial", port="/dev/ttyUSB0", tcp_port=None, baudrate=9600,
        parity="E", stopbits=1, bytesize=8, timeout_s=0.5, retries=1, gap=8,
        max_registers=125, backoff_max_s=60.0)
    tcp = c.buses[1]
    assert (tcp.kind, tcp.port, tcp.tcp_port) == ("tcp", "2001:db8::5", 502)
    assert c.devices[0] == DeviceCfg(
        name="fm-01", bus="rs485-1", unit=1, model="turbine-evc",
        poll_interval_s=10.0, enabled=True, params={})


def test_integers_become_floats_where_floats_are_meant(tmp_path):
    c = load_config(_write(tmp_path, """
[gateway]
id = "g"
[outbox]
max_age_days = 2
[[bus]]
name = "b"
port = "tcp://192.0.2.1:1502"
timeout_s = 1
backoff_max_s = 30
[[device]]
name = "d"
bus = "b"
unit = 1
model = "x"
poll_interval_s = 5
[device.params]
rated_flow_max_m3h = 160
"""))
    assert type(c.outbox.max_age_days) is float
    assert type(c.buses[0].timeout_s) is float and type(c.buses[0].backoff_max_s) is float
    assert type(c.devices[0].poll_interval_s) is float
    assert c.buses[0].tcp_port == 1502
    # Params are the model's business: kept exactly as written.
    assert c.devices[0].params == {"rated_flow_max_m3h": 160}


def test_tls_changes_the_default_port(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    c = load_config(_write(tmp_path, '[gateway]\nid = "g"\n[mqtt.tls]\nca_file = "ca.pem"\n'))
    assert c.mqtt.port == 8883
    assert c.mqtt.tls == cfgmod.TlsCfg(ca_file=tmp_path / "ca.pem", cert_file=None,
                                      key_file=None, insecure=False)


def test_known_models_may_be_any_iterable(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n[[bus]]\nname = "b"\nport = "/dev/ttyS0"\n'
                         '[[device]]\nname = "d"\nbus = "b"\nunit = 1\nmodel = "turbine-evc"\n')
    assert check_config(p, known_models=(m for m in KNOWN)) == []
    assert check_config(p, known_models=[]) == [
        'device[0].model: "turbine-evc" is not a known model (none are installed)']


def test_nan_and_inf_are_rejected(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n[outbox]\nmax_age_days = inf\n'
                         '[[bus]]\nname = "b"\nport = "/dev/ttyS0"\ntimeout_s = nan\n')
    assert check_config(p) == ["outbox.max_age_days: inf is not a finite number",
                               "bus[0].timeout_s: nan is not a finite number"]


# --------------------------------------------------------------------------- paths

def test_relative_state_dir_is_relative_to_the_config_folder(tmp_path, monkeypatch):
    sub = tmp_path / "etc"
    sub.mkdir()
    p = _write(sub, '[gateway]\nid = "g"\nstate_dir = "../state"\n')
    monkeypatch.chdir("/")
    assert load_config(p).gateway.state_dir == sub / "../state"


def test_relative_config_path_is_made_absolute(tmp_path, monkeypatch):
    _write(tmp_path, '[gateway]\nid = "g"\nstate_dir = "state"\n')
    monkeypatch.chdir(tmp_path)
    c = load_config("edgegw.toml")
    assert c.path == tmp_path / "edgegw.toml"
    assert c.gateway.state_dir == tmp_path / "state"


def test_absolute_state_dir_is_kept(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\nstate_dir = "/srv/edgegw"\n')
    assert load_config(p).gateway.state_dir == Path("/srv/edgegw")


def test_state_dir_that_is_a_file(tmp_path):
    (tmp_path / "state").write_text("")
    p = _write(tmp_path, '[gateway]\nid = "g"\nstate_dir = "state"\n')
    assert check_config(p) == [f"gateway.state_dir: {tmp_path}/state exists and is not a folder"]


# --------------------------------------------------------------------------- credentials

def _with_credentials(tmp_path, content: bytes, mode=0o600) -> Path:
    cred = tmp_path / "mqtt.credentials"
    cred.write_bytes(content)
    cred.chmod(mode)
    return _write(tmp_path, '[gateway]\nid = "g"\n[mqtt]\ncredentials_file = "mqtt.credentials"\n')


@pytest.mark.parametrize("content, user, password", [
    (b"edgegw\ns3cret\n", "edgegw", "s3cret"),
    (b"edgegw\r\npass with spaces \r\n", "edgegw", "pass with spaces "),
    (b"edgegw\ns3cret", "edgegw", "s3cret"),
    (b"edgegw\ns3cret\n\n\n", "edgegw", "s3cret"),
    ("网关\n密码\n".encode("utf-8"), "网关", "密码"),
])
def test_credentials_are_parsed(tmp_path, content, user, password):
    m = load_config(_with_credentials(tmp_path, content)).mqtt
    assert (m.username, m.password) == (user, password)


def test_password_is_not_in_repr(tmp_path):
    c = load_config(_with_credentials(tmp_path, b"edgegw\ns3cret\n"))
    assert "s3cret" not in repr(c)


@pytest.mark.parametrize("content, problem", [
    (b"", "line 1 (the user name) is empty"),
    (b"\ns3cret\n", "line 1 (the user name) is empty"),
    (b"edgegw\n", "line 2 (the password) is missing"),
    (b"edgegw\n\n", "line 2 (the password) is missing"),
    (b"edgegw\ns3cret\nextra\n", "expected 2 lines (user name, password), found 3"),
])
def test_bad_credentials_file(tmp_path, content, problem):
    p = _with_credentials(tmp_path, content)
    assert check_config(p) == [f"mqtt.credentials_file: {tmp_path}/mqtt.credentials: {problem}"]


@pytest.mark.parametrize("mode, ok", [(0o600, True), (0o400, True),
                                      (0o644, False), (0o604, False), (0o666, False)])
def test_world_readable_credentials(tmp_path, mode, ok):
    p = _with_credentials(tmp_path, b"edgegw\ns3cret\n", mode)
    cred = tmp_path / "mqtt.credentials"
    expected = [] if ok else [
        f"mqtt.credentials_file: {cred} is readable by everyone (run: chmod 600 {cred})"]
    assert check_config(p) == expected


def test_world_readable_and_malformed_are_both_reported(tmp_path):
    p = _with_credentials(tmp_path, b"edgegw\n", 0o644)
    cred = tmp_path / "mqtt.credentials"
    assert check_config(p) == [
        f"mqtt.credentials_file: {cred} is readable by everyone (run: chmod 600 {cred})",
        f"mqtt.credentials_file: {cred}: line 2 (the password) is missing",
    ]


def test_credentials_file_missing(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n[mqtt]\ncredentials_file = "/nonexistent/cred"\n')
    assert check_config(p) == ["mqtt.credentials_file: /nonexistent/cred does not exist"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_credentials_file_unreadable(tmp_path):
    p = _with_credentials(tmp_path, b"edgegw\ns3cret\n", 0o000)
    assert check_config(p) == [
        f"mqtt.credentials_file: {tmp_path}/mqtt.credentials cannot be read (Permission denied)"]


# --------------------------------------------------------------------------- small rules

@pytest.mark.parametrize("prefix, ok", [
    ("edgegw", True), ("gas/riverside", True), ("a", True),
    ("a/+", False), ("#", False), ("a/", False), ("/a", False), ("a//b", False),
    ("$SYS", False), ("", False),
])
def test_topic_prefix(tmp_path, prefix, ok):
    p = _write(tmp_path, f'[gateway]\nid = "g"\n[mqtt]\ntopic_prefix = "{prefix}"\n')
    assert (check_config(p) == []) is ok


@pytest.mark.parametrize("port, kind, host, tcp_port", [
    ("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", "serial", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", None),
    ("tcp://192.0.2.10:502", "tcp", "192.0.2.10", 502),
    ("tcp://[::1]:5020", "tcp", "::1", 5020),
    ("tcp://plc-7.site.example:1502", "tcp", "plc-7.site.example", 1502),
    ("tcp://192.0.2.10", "tcp", "192.0.2.10", 502),
])
def test_bus_ports(tmp_path, port, kind, host, tcp_port):
    p = _write(tmp_path, f'[gateway]\nid = "g"\n[[bus]]\nname = "b"\nport = "{port}"\n')
    bus = load_config(p).buses[0]
    assert (bus.kind, bus.port, bus.tcp_port) == (kind, host, tcp_port)


@pytest.mark.parametrize("port", ["tcp://", "tcp://:502", "tcp://[zz]:502", "tcp://host:502/x",
                                  "tcp://bad_host:502", "ttyUSB0", ""])
def test_bad_bus_ports(tmp_path, port):
    p = _write(tmp_path, f'[gateway]\nid = "g"\n[[bus]]\nname = "b"\nport = "{port}"\n')
    problems = check_config(p)
    assert len(problems) == 1 and problems[0].startswith("bus[0].port: ")


def test_no_bus_configured(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n[[device]]\nname = "d"\nbus = "b"\nunit = 1\n'
                         'model = "m"\n')
    assert check_config(p) == [
        'device[0].bus: "b" is not a configured bus (no [[bus]] is configured)']


def test_device_may_come_before_its_bus(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n[[device]]\nname = "d"\nbus = "b"\nunit = 1\n'
                         'model = "m"\n[[bus]]\nname = "b"\nport = "/dev/ttyS0"\n')
    assert check_config(p) == []


def test_same_unit_on_different_buses_is_fine(tmp_path):
    p = _write(tmp_path, """
[gateway]
id = "g"
[[bus]]
name = "a"
port = "/dev/ttyS0"
[[bus]]
name = "b"
port = "/dev/ttyS1"
[[device]]
name = "d1"
bus = "a"
unit = 1
model = "m"
[[device]]
name = "d2"
bus = "b"
unit = 1
model = "m"
""")
    assert check_config(p) == []


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n[outbox]\nzzz = 1\n')
    assert check_config(p) == [
        "outbox.zzz: unknown key (known keys: max_bytes, max_age_days, synchronous, inflight)"]


def test_wrong_shapes(tmp_path):
    p = _write(tmp_path, 'gateway = "g"\nmqtt = 1\nbus = [1]\ndevice = "x"\n')
    assert check_config(p) == [
        'gateway: expected a table, got string "g"',
        "mqtt: expected a table, got integer 1",
        "bus[0]: expected a table, got integer 1",
        'device: expected an array of tables ([[device]]), got string "x"',
    ]


def test_config_error_is_an_exception_with_all_problems():
    e = ConfigError(["a: one", "b: two"])
    assert e.problems == ["a: one", "b: two"]
    assert str(e) == "a: one\nb: two"


# --------------------------------------------------------------------------- shipped files

def test_deploy_example_is_valid():
    example = ROOT / "deploy" / "edgegw.example.toml"
    assert check_config(example) == []
    c = load_config(example, known_models=KNOWN)
    assert [b.kind for b in c.buses] == ["serial", "serial", "tcp"]
    assert all(b.port.startswith("/dev/serial/by-id/") for b in c.buses if b.kind == "serial")
    assert {d.model for d in c.devices} == {"turbine-evc", "meihua-ic"}
    fm = next(d for d in c.devices if d.model == "turbine-evc")
    assert {"rated_flow_min_m3h", "rated_flow_max_m3h", "starting_flow_m3h"} <= fm.params.keys()


def _doc_example() -> str:
    text = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    return max(blocks, key=len)   # the complete example is the longest block


def test_docs_complete_example_only_lacks_the_files_it_names(tmp_path):
    p = _write(tmp_path, _doc_example())
    problems = check_config(p, known_models=KNOWN)
    assert problems and all(x.endswith("does not exist") for x in problems), problems


def test_docs_mention_every_key():
    text = (ROOT / "docs" / "configuration.md").read_text("utf-8")
    doc = tomllib.loads(_doc_example())
    assert "`[mqtt.tls]`" in text
    keys = {"id", "site", "state_dir", "language", "log_level", "models_dir", "host", "port", "client_id",
            "topic_prefix", "keepalive", "qos", "credentials_file", "ca_file", "cert_file",
            "key_file", "insecure", "name", "bus", "unit", "model", "poll_interval_s", "enabled",
            "params", *cfgmod.DEFAULTS["bus"], *cfgmod.DEFAULTS["outbox"]}
    for key in keys:
        assert f"`{key}`" in text, key
    # the complete example really is complete
    assert set(doc) == {"gateway", "mqtt", "outbox", "bus", "device"}
    assert set(doc["gateway"]) == {"id", "site", "state_dir", "language", "log_level", "models_dir",
                                   "fault_history_days"}
    assert set(doc["mqtt"]) == {"host", "port", "client_id", "topic_prefix", "keepalive", "qos",
                                "credentials_file", "tls"}
    assert set(doc["outbox"]) == set(cfgmod.DEFAULTS["outbox"])
    assert set().union(*doc["bus"]) == {"name", "port", *cfgmod.DEFAULTS["bus"]}


def test_module_checks_a_file_from_the_command_line(tmp_path, capsys):
    good = _write(tmp_path, '[gateway]\nid = "g"\n', "good.toml")
    bad = _write(tmp_path, '[gateway]\nid = "g"\nlog_level = "loud"\n', "bad.toml")
    assert _main([str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: OK\n"
    assert _main([str(bad)]) == 1
    assert capsys.readouterr().out == (
        'gateway.log_level: "loud" must be one of debug, info, warning, error\n')
    assert _main([]) == 2


# --------------------------------------------------------------------------- hostile files (issue 12, defect 5)
# Each gives one line naming the key path (or the file), never a traceback,
# and never hangs.

def _one_line(problems: list[str]) -> list[str]:
    assert problems, "expected a problem"
    for p in problems:
        assert isinstance(p, str) and "\n" not in p and "\r" not in p, p
        assert "Traceback" not in p
    return problems


def test_registry_csv_in_gbk_is_one_problem_with_its_key(tmp_path):
    # Saved by Excel on a Chinese office PC. GB18030 decoding may be
    # accepted by the card file reader; then the file is simply valid.
    (tmp_path / "cards.csv").write_bytes("card,holder_type,issued,note\n12345,owner,2024-01-01,张三的卡\n"
                                         .encode("gbk"))
    p = _write(tmp_path, '[gateway]\nid = "g"\n[doors]\nregistry_csv = "cards.csv"\n')
    problems = check_config(p)
    for problem in problems:
        assert problem.startswith("doors.registry_csv: ") and "UTF-8" in problem, problem
    if problems:
        assert len(_one_line(problems)) == 1


def test_registry_csv_of_bytes_no_encoding_reads_is_one_problem_with_its_key(tmp_path):
    (tmp_path / "cards.csv").write_bytes(b"card,holder_type,issued\n1,owner,2024-01-01,\xff\x80\xfe\n")
    p = _write(tmp_path, '[gateway]\nid = "g"\n[doors]\nregistry_csv = "cards.csv"\n')
    problems = _one_line(check_config(p))
    assert len(problems) == 1 and problems[0].startswith(f"doors.registry_csv: {tmp_path}/cards.csv: ")


@pytest.mark.parametrize("value", ["[" * 1000 + "]" * 1000, "{a = " * 1000 + "1" + "}" * 1000,
                                   "[" * 100_000 + "]" * 100_000])
def test_deep_nesting_is_one_problem(tmp_path, value):
    p = _write(tmp_path, f'[gateway]\nid = "g"\n[mqtt]\nhost = {value}\n')
    problems = _one_line(check_config(p))
    assert problems == [f"{p}: nested more than {cfgmod.load.MAX_DEPTH} levels deep (tables or arrays)"]


def test_nesting_below_the_limit_is_checked_as_usual(tmp_path):
    p = _write(tmp_path, f'[gateway]\nid = "g"\n[mqtt]\nhost = {"[" * 20}{"]" * 20}\n')
    assert check_config(p) == ["mqtt.host: expected a string, got array"]


def test_a_file_name_too_long_for_the_filesystem_is_one_problem_with_its_key(tmp_path):
    long = "a" * 300
    p = _write(tmp_path, f'[gateway]\nid = "g"\nstate_dir = "{long}"\n')
    assert _one_line(check_config(p)) == [
        f"gateway.state_dir: {tmp_path / long} cannot be used (File name too long)"]
    p = _write(tmp_path, f'[gateway]\nid = "g"\n[mqtt]\ncredentials_file = "{long}"\n')
    assert _one_line(check_config(p)) == [
        f"mqtt.credentials_file: {tmp_path / long} cannot be read (File name too long)"]
    p = _write(tmp_path, f'[gateway]\nid = "g"\n[doors]\nregistry_csv = "{long}"\n')
    assert _one_line(check_config(p))[0].startswith("doors.registry_csv: ")


def test_a_config_path_too_long_or_with_nul_is_one_problem(tmp_path):
    long = tmp_path / ("b" * 300)
    assert check_config(long) == [f"{long}: cannot be read (File name too long)"]
    assert check_config(f"{tmp_path}/x\0y") == [f"{tmp_path}/x\\x00y: cannot be read (the name contains a NUL byte)"]


def test_a_device_instead_of_a_file_is_refused_unread():
    assert check_config("/dev/zero") == [
        "/dev/zero: is not a regular file (a character device), expected a TOML file"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "edgegw.toml"
    os.mkfifo(fifo)
    got: list = []
    t = threading.Thread(target=lambda: got.append(check_config(fifo)), daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        with open(fifo, "wb"):   # let the stuck reader go before failing
            pass
        pytest.fail("config check hangs on a FIFO")
    assert got == [[f"{fifo}: is not a regular file (a FIFO), expected a TOML file"]]


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    p = tmp_path / "edgegw.toml"
    with open(p, "wb") as f:
        f.truncate(cfgmod.load.MAX_CONFIG_BYTES + 1)   # sparse: costs no disk
    assert check_config(p) == [f"{p}: is {cfgmod.load.MAX_CONFIG_BYTES + 1} bytes, "
                               f"more than a config file may be ({cfgmod.load.MAX_CONFIG_BYTES} bytes)"]
    with open(p, "r+b") as f:
        f.truncate(cfgmod.load.MAX_CONFIG_BYTES)
    assert check_config(p) == [f"{p}: TOML syntax error at line 1, column 1: Invalid statement"]


def test_control_characters_in_keys_and_values_stay_on_one_line(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n"a\\nb\\u001b[31m" = 1\n[mqtt]\ncredentials_file = "x\\ny"\n')
    problems = _one_line(check_config(p))
    assert problems[0].startswith('gateway."a\\nb\\u001b[31m": unknown key')
    assert problems[1] == f"mqtt.credentials_file: {tmp_path}/x\\ny does not exist"


def test_group_readable_credentials_are_refused(tmp_path):
    p = _with_credentials(tmp_path, b"edgegw\ns3cret\n", 0o640)
    cred = tmp_path / "mqtt.credentials"
    assert check_config(p) == [
        f"mqtt.credentials_file: {cred} is readable by its group (run: chmod 600 {cred})"]


def test_a_huge_credentials_file_is_refused_unread(tmp_path):
    p = _with_credentials(tmp_path, b"", 0o600)
    cred = tmp_path / "mqtt.credentials"
    with open(cred, "r+b") as f:
        f.truncate(1 << 30)
    assert check_config(p) == [
        f"mqtt.credentials_file: {cred} is {1 << 30} bytes; expected 2 short lines (user name, password)"]


def test_a_tls_client_key_readable_by_others_is_refused(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "client.key").chmod(0o640)
    p = _write(tmp_path, '[gateway]\nid = "g"\n[mqtt.tls]\nca_file = "ca.pem"\ncert_file = "client.pem"\n'
                         'key_file = "client.key"\n')
    key = tmp_path / "client.key"
    assert check_config(p) == [f"mqtt.tls.key_file: {key} is readable by its group (run: chmod 600 {key})"]
    key.chmod(0o600)
    assert check_config(p) == []


def test_device_names_that_are_the_gateways_own_topics_are_refused(tmp_path):
    p = _write(tmp_path, '[gateway]\nid = "g"\n[[bus]]\nname = "b"\nport = "/dev/ttyUSB0"\n'
                         '[[device]]\nname = "cmd"\nbus = "b"\nunit = 1\nmodel = "turbine-evc"\n'
                         '[[device]]\nname = "config"\nbus = "b"\nunit = 2\nmodel = "turbine-evc"\n')
    assert check_config(p) == [
        'device[0].name: "cmd" is reserved: the gateway\'s own topics <prefix>/<gateway>/cmd/... are under that name',
        'device[1].name: "config" is reserved: the gateway\'s own topics <prefix>/<gateway>/config/... '
        'are under that name',
    ]


def test_a_discovery_prefix_the_daemon_would_refuse_is_a_problem(tmp_path):
    """What the config check accepts, the daemon must be able to announce: a
    prefix over 200 bytes made Home Assistant discovery raise at start."""
    long_prefix = "ha/" + "x" * 200
    p = _write(tmp_path, f'[gateway]\nid = "gw-1"\n[homeassistant]\nenabled = true\n'
                         f'discovery_prefix = "{long_prefix}"\n')
    assert [x for x in check_config(p) if x.startswith("homeassistant.discovery_prefix")]
    ok = _write(tmp_path, '[gateway]\nid = "gw-1"\n[homeassistant]\nenabled = true\n'
                          'discovery_prefix = "homeassistant"\n', "ok.toml")
    assert check_config(ok) == []
