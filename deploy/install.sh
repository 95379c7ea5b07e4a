#!/usr/bin/env bash
# Install edgegw on Raspberry Pi OS / Debian (armv7, aarch64, x86_64), as root.
# Idempotent: run again to upgrade. Needs no compiler: every runtime
# dependency is pure Python.
#
#   sudo deploy/install.sh            # from a checkout or an unpacked release
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/edgegw
[ "$(id -u)" = 0 ] || { echo "run as root (sudo $0)" >&2; exit 2; }

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv

getent group edgegw >/dev/null || groupadd --system edgegw
id edgegw >/dev/null 2>&1 || useradd --system --gid edgegw --groups dialout \
    --home-dir /var/lib/edgegw --shell /usr/sbin/nologin edgegw

install -d -m 0755 "$PREFIX"
rm -rf "$PREFIX/src.new"
cp -a "$SRC" "$PREFIX/src.new"
rm -rf "$PREFIX/src.new/.venv" "$PREFIX/src.new/.git" "$PREFIX/src.new/firmware/node_modules"
rm -rf "$PREFIX/src"
mv "$PREFIX/src.new" "$PREFIX/src"
ln -sfn "$PREFIX/src/docs" "$PREFIX/docs"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade pip
"$PREFIX/venv/bin/pip" install -q "$PREFIX/src"
ln -sfn "$PREFIX/venv/bin/edgegw" /usr/local/bin/edgegw

install -d -m 0750 -o root -g edgegw /etc/edgegw
if [ ! -f /etc/edgegw/edgegw.toml ]; then
    install -m 0640 -o root -g edgegw "$SRC/deploy/edgegw.example.toml" /etc/edgegw/edgegw.toml
    echo "wrote /etc/edgegw/edgegw.toml from the example: edit it, then run: edgegw config check /etc/edgegw/edgegw.toml"
fi
install -d -m 0750 -o edgegw -g edgegw /var/lib/edgegw
install -m 0644 "$SRC/deploy/edgegw.service" /etc/systemd/system/edgegw.service
systemctl daemon-reload
systemctl enable edgegw.service
if edgegw config check /etc/edgegw/edgegw.toml; then
    systemctl restart edgegw.service
    echo "edgegw is running: journalctl -u edgegw -f ; edgegw status"
else
    echo "fix the configuration above, then: systemctl restart edgegw" >&2
fi
