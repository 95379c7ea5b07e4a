#!/usr/bin/env bash
# Install edgegw on Raspberry Pi OS / Debian (armv7, aarch64, x86_64), as root.
# Idempotent: run again to upgrade. Needs no compiler: every runtime
# dependency is pure Python. Step by step: docs/install.md.
#
#   sudo deploy/install.sh                  # from a checkout or an unpacked release
#   sudo deploy/install.sh --wheels DIR     # no network: edgegw and its dependencies
#                                           # as wheels in DIR, made on any machine with
#                                           # internet by: python3 -m pip wheel -w DIR .
#
# Exit status:
#   0  installed, enabled and running
#   1  installed and enabled, but the configuration has problems: not started
#   2  refused before changing anything (Python too old, not root, bad arguments)
#   3  installed, but not enabled: /etc/edgegw/edgegw.toml is still the example
#
# For tests only (the defaults are the real thing):
#   EDGEGW_DESTDIR   a scratch root in front of every path the script reads or writes
#   EDGEGW_USER, EDGEGW_GROUP   the service account (default edgegw)
#   EDGEGW_PYTHON    the Python to check and build the venv with (default python3)
# systemctl, apt-get, useradd and groupadd are taken from PATH.
set -euo pipefail

PLACEHOLDER_ID="CHANGE-ME"   # [gateway] id in deploy/edgegw.example.toml
PY=${EDGEGW_PYTHON:-python3}

# ---- Python >= 3.11, before anything else.
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "edgegw needs Python 3.11 or newer, and $PY was not found." >&2
    echo "Raspberry Pi OS Bookworm / Debian 12 and later ship it: apt-get install python3 python3-venv" >&2
    exit 2
fi
if ! PY_VERSION=$("$PY" -c 'import sys; v = sys.version_info; print("%d.%d.%d" % v[:3]); sys.exit(v < (3, 11))' 2>/dev/null); then
    echo "edgegw needs Python 3.11 or newer; $(command -v "$PY") is ${PY_VERSION:-unknown}." >&2
    echo "Use Raspberry Pi OS Bookworm / Debian 12 or later (Python 3.11), or point EDGEGW_PYTHON at a newer Python." >&2
    exit 2
fi

usage() {
    echo "usage: $0 [--wheels DIR]"
    echo "  --wheels DIR   install edgegw and its dependencies from the wheels in DIR, without network"
}

WHEELS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) [ $# -ge 2 ] || { usage >&2; exit 2; }; WHEELS=$2; shift 2 ;;
        --wheels=*) WHEELS=${1#--wheels=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -n "$WHEELS" ]; then
    if [ ! -d "$WHEELS" ]; then
        echo "--wheels: $WHEELS is not a folder" >&2
        exit 2
    fi
    WHEELS=$(cd "$WHEELS" && pwd)
    if ! compgen -G "$WHEELS/edgegw-*.whl" >/dev/null; then
        echo "--wheels: no edgegw-*.whl in $WHEELS. Make the folder on a machine with internet," >&2
        echo "from the edgegw checkout: python3 -m pip wheel -w DIR ." >&2
        exit 2
    fi
fi

[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 2; }

SRC=$(cd "$(dirname "$0")/.." && pwd)
D=${EDGEGW_DESTDIR:-}
SVC_USER=${EDGEGW_USER:-edgegw}
SVC_GROUP=${EDGEGW_GROUP:-edgegw}
PREFIX=$D/opt/edgegw
ETC=$D/etc/edgegw
CONF=$ETC/edgegw.toml
STATE=$D/var/lib/edgegw
UNIT_DIR=$D/etc/systemd/system
BIN_DIR=$D/usr/local/bin

# python3-venv (ensurepip) is a separate Debian package; fetch it only when
# missing, so an offline site with it already installed needs no network.
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "installing python3-venv from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
fi

getent group "$SVC_GROUP" >/dev/null || groupadd --system "$SVC_GROUP"
# dialout owns the serial ports; the unit adds it too (SupplementaryGroups),
# this is for running edgegw commands as the service user.
id "$SVC_USER" >/dev/null 2>&1 || useradd --system --gid "$SVC_GROUP" --groups dialout \
    --home-dir /var/lib/edgegw --shell /usr/sbin/nologin "$SVC_USER"

# ---- Code: a copy of the source (for the docs) and a virtual environment.
install -d -m 0755 "$PREFIX" "$BIN_DIR"
rm -rf "$PREFIX/src.new"
mkdir "$PREFIX/src.new"
tar -C "$SRC" --exclude=./.venv --exclude=./.git --exclude=./firmware/node_modules \
    --exclude='__pycache__' --exclude=./.pytest_cache -cf - . | tar -C "$PREFIX/src.new" -xf -
rm -rf "$PREFIX/src"
mv "$PREFIX/src.new" "$PREFIX/src"
ln -sfn "$PREFIX/src/docs" "$PREFIX/docs"
# A venv left behind by an older Python (after a dist-upgrade) is rebuilt.
if ! "$PREFIX/venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    rm -rf "$PREFIX/venv"
    "$PY" -m venv "$PREFIX/venv"
fi
if [ -n "$WHEELS" ]; then
    # --force-reinstall: the same version number rebuilt must replace the old files.
    "$PREFIX/venv/bin/pip" install -q --no-index --find-links "$WHEELS" --upgrade --force-reinstall edgegw
else
    "$PREFIX/venv/bin/pip" install -q --upgrade pip
    "$PREFIX/venv/bin/pip" install -q "$PREFIX/src"
fi
ln -sfn "$PREFIX/venv/bin/edgegw" "$BIN_DIR/edgegw"

# ---- Configuration and state.
install -d -m 0750 -o root -g "$SVC_GROUP" "$ETC"
if [ ! -f "$CONF" ]; then
    install -m 0640 -o root -g "$SVC_GROUP" "$SRC/deploy/edgegw.example.toml" "$CONF"
    echo "wrote $CONF from the example"
fi
install -d -m 0750 -o "$SVC_USER" -g "$SVC_GROUP" "$STATE"

# ---- The service.
install -d -m 0755 "$UNIT_DIR"
install -m 0644 "$SRC/deploy/edgegw.service" "$UNIT_DIR/edgegw.service"
systemctl daemon-reload

gateway_id=$("$PREFIX/venv/bin/python" - "$CONF" <<'EOF' 2>/dev/null || true
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f).get("gateway", {}).get("id", ""))
EOF
)
if [ "$gateway_id" = "$PLACEHOLDER_ID" ]; then
    cat >&2 <<EOF

edgegw is installed, but the service is NOT enabled: $CONF
is still the example ([gateway] id = "$PLACEHOLDER_ID"). Edit it first:
  [gateway] id        this site's unique name (it is also its broker user name)
  [mqtt]              host, ca_file in [mqtt.tls], and credentials_file: the
                      broker login (the comments in the file say how)
  [[bus]] port        /dev/serial/by-id/... paths: ls -l /dev/serial/by-id/
  [[device]]          one per meter: bus, unit id, model, poll interval
then:
  edgegw config check $CONF
  systemctl enable --now edgegw
EOF
    exit 3
fi

systemctl enable edgegw.service
# Checked as the service user: a file that only root can read passes as root.
if runuser -u "$SVC_USER" -- "$PREFIX/venv/bin/edgegw" config check "$CONF"; then
    systemctl restart edgegw.service
    echo "edgegw is running: journalctl -u edgegw -f ; edgegw status"
else
    echo "fix the configuration above, then: systemctl restart edgegw" >&2
    exit 1
fi
