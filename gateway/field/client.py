"""The CLI side of the control socket, and what every field command needs
first: the site config (readable by a member of group edgegw), the language,
and one way to word an error."""

import errno
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.site.config import Checker, ConfigError, load_config
from gateway.site.config.checker import BAD, one_line
from gateway.site.config.load import raw_document
from gateway.site.config.sections import models_dir_of
from gateway.site.config.types import Config
from protocols.models import Catalogue, load_catalogue

from . import i18n
from .i18n import t
from .text import use_color

SOCKET_NAME = "control.sock"


def socket_path(state_dir) -> Path:
    return Path(state_dir) / SOCKET_NAME


class DaemonDown(Exception):
    """Nothing answers on the socket: the daemon is not running."""


class DaemonDenied(Exception):
    """The socket is there but this user may not use it."""


class DaemonError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ControlClient:
    def __init__(self, path, timeout: float = 15.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._n = 0

    def connect(self) -> "ControlClient":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except PermissionError as exc:
            s.close()
            raise DaemonDenied(str(exc)) from None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            s.close()
            raise DaemonDown(str(exc)) from None
        except OSError as exc:
            s.close()
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise DaemonDenied(str(exc)) from None
            raise DaemonDown(str(exc)) from None
        self._sock = s
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> dict:
        assert self._sock is not None
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise DaemonError("timeout", f"no answer from the daemon within {self.timeout:.0f} s") from None
            except OSError as exc:
                raise DaemonError("closed", f"the daemon closed the connection: {exc}") from None
            if not chunk:
                raise DaemonError("closed", "the daemon closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, cmd: str, args: dict | None = None) -> int:
        self._n += 1
        req = {"id": self._n, "cmd": cmd, "args": args or {}}
        assert self._sock is not None
        try:
            self._sock.sendall(json.dumps(req).encode() + b"\n")
        except OSError as exc:
            # The daemon may have answered and closed before the request
            # went out (a full socket says "busy" to a newcomer at once):
            # what it said is the reason, not the broken pipe.
            said = self._said_before_closing()
            if said is not None:
                raise DaemonError(said.get("code") or "error", said.get("error") or "refused") from None
            raise DaemonError("closed", f"cannot send to the daemon: {exc}") from None
        return self._n

    def _said_before_closing(self) -> dict | None:
        """A refusal the daemon left in the socket before closing it, if any."""
        try:
            msg = self._line()
        except (DaemonError, ValueError):
            return None
        return msg if isinstance(msg, dict) and msg.get("ok") is False else None

    def request(self, cmd: str, args: dict | None = None,
                on_progress: Callable[[dict], None] | None = None) -> object:
        """One request; progress lines go to on_progress; the result, or DaemonError."""
        if self._sock is None:
            self.connect()
        rid = self.send(cmd, args)
        while True:
            msg = self._line()
            if msg.get("id") not in (rid, None):
                continue
            if "progress" in msg:
                if on_progress is not None:
                    on_progress(msg["progress"])
                continue
            if "event" in msg:
                continue
            if msg.get("ok"):
                return msg.get("result")
            raise DaemonError(msg.get("code") or "error", msg.get("error") or "failed")

    def events(self, cmd: str, args: dict | None = None):
        """A streaming request (watch): yields each event until the daemon ends it."""
        if self._sock is None:
            self.connect()
        rid = self.send(cmd, args)
        while True:
            msg = self._line()
            if msg.get("id") != rid:
                continue
            if "event" in msg:
                yield msg["event"]
                continue
            if msg.get("ok") is False:
                raise DaemonError(msg.get("code") or "error", msg.get("error") or "failed")
            return


@dataclass
class Site:
    path: str
    cfg: Config
    models: dict
    lang: str
    color: bool
    state_dir: Path

    @property
    def socket(self) -> Path:
        return socket_path(self.state_dir)

    def client(self, timeout: float = 15.0) -> ControlClient:
        return ControlClient(self.socket, timeout)


def err(msg: str) -> None:
    print(f"edgegw: {msg}", file=sys.stderr)


DEFAULT_CONFIG = "/etc/edgegw/edgegw.toml"
_SECRETS = ("mqtt.credentials_file", "mqtt.tls")


def site_catalogue(config_path) -> Catalogue:
    """The models a site uses: the packaged ones with the config's
    [gateway] models_dir over them, loaded as the daemon loads them
    (load_catalogue). The folder is read from the raw file, because checking
    the config needs the models; a config that cannot be read gives the
    default folder. Never raises for a broken model file."""
    return load_catalogue(models_dir_of(raw_document(config_path), config_path))


def load_cfg(path: str, models: dict):
    """The site config for a field command: (config, problems).

    The MQTT password and the TLS key are the service user's (mode 0600), so
    a member of group edgegw cannot read them; the commands need neither (the
    daemon, which can, talks to the broker). When those unreadable files are
    the only problems, the rest of the config is used as is."""
    try:
        return load_config(path, known_models=models), []
    except ConfigError as exc:
        problems = exc.problems
    if not all(p.startswith(_SECRETS) and "cannot be read" in p for p in problems):
        return None, problems
    return _without_secrets(path, models), problems


def _without_secrets(path: str, models: dict):


    class WithoutSecrets(Checker):
        def existing_file(self, kp, v):
            if not kp.startswith(_SECRETS):
                return super().existing_file(kp, v)
            got = self.string(kp, v)
            return got if got is BAD else self.resolve(got)

        def credentials(self, kp, v):
            got = self.existing_file(kp, v)
            return got if got is BAD else (None, None)

    doc = raw_document(path)
    if not doc:
        return None
    checker = WithoutSecrets(Path(os.path.abspath(path)), models)
    cfg = checker.document(doc)
    return None if checker.problems else cfg


def load_site(args) -> Site | int:
    """The site config named by --config; the exit code 2 (with the reason
    printed) when it cannot be used."""
    path = str(getattr(args, "config", None) or DEFAULT_CONFIG)
    lang = i18n.norm(getattr(args, "lang", None))
    color = use_color() and not getattr(args, "json", False)
    models = site_catalogue(path)
    cfg, problems = load_cfg(path, models)
    if cfg is None:
        lang = lang or _raw_language(path) or "en"
        shown = one_line(path)   # as the problems name it: printable whatever the bytes
        if len(problems) == 1 and problems[0].startswith(shown + ":"):
            err(i18n.t(lang, "er.no_config", path=shown, why=problems[0][len(shown) + 1:].strip()))
        else:
            err(i18n.t(lang, "er.config_bad", path=shown, n=len(problems)))
        return 2
    return Site(path=path, cfg=cfg, models=models, lang=lang or cfg.gateway.language, color=color,
                state_dir=Path(cfg.gateway.state_dir))


def _raw_language(path: str) -> str | None:
    """[gateway] language of a file that may not pass the check, to word
    its problems in; None whenever it cannot be had (the check says why)."""
    gateway = raw_document(path).get("gateway")
    return i18n.norm(gateway.get("language")) if isinstance(gateway, dict) else None


def daemon_error(site: Site, exc: Exception) -> int:
    if isinstance(exc, DaemonDenied):
        err(t(site.lang, "er.denied", sock=site.socket))
    elif isinstance(exc, DaemonDown):
        err(t(site.lang, "er.daemon_down", sock=site.socket))
    elif getattr(exc, "code", None) == "busy":
        err(t(site.lang, "er.daemon_busy", err=exc.message))  # type: ignore[attr-defined]
    else:
        err(t(site.lang, "er.daemon_error", err=getattr(exc, "message", str(exc))))
    return 2


def ask_daemon(site: Site, cmd: str, args: dict | None = None) -> tuple[object, int | None]:
    """The running daemon's answer: (result, None). (None, None) when no
    daemon answers, for the command to read the state folder instead; (None,
    2) after saying why the daemon refused."""
    try:
        with site.client() as c:
            return c.request(cmd, args), None
    except DaemonDown:
        return None, None
    except (DaemonDenied, DaemonError) as exc:
        return None, daemon_error(site, exc)


def print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))
