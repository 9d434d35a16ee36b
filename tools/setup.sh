#!/usr/bin/env bash
# Installs the system packages gemmatrain builds and tests against (Debian/Ubuntu).
# Idempotent: prints nothing and touches nothing when everything is already there.
set -euo pipefail
pkgs=(build-essential pkg-config libopenblas-dev libopenmpi-dev openmpi-bin
      libhdf5-dev libyaml-dev check libjansson-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
