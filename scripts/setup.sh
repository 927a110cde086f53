#!/usr/bin/env bash
# Idempotent setup for aem-bench on Debian 12 / 13 (no GPU needed).
#   1. system packages: a Vulkan driver SAPIEN accepts (Mesa >= 24.3 lavapipe), and Chromium
#      with ChromeDriver (the leaderboard page's browser test)
#   2. .venv in the repo root with torch, torchvision and the package (+ dev extras)
# A second run checks a stamp and does nothing when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=${PYTHON:-python3}
# timm and open_clip (the DINOv2 and CLIP encoders) need torchvision, and PyPI's torchvision does
# not load beside a CPU-only torch build. This pair comes as one (CUDA-enabled) build that runs
# on the CPU too; our machines keep both wheels on disk, so the install does not download them.
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+)\..*/\2/' || true
}

install_browser() {
  if dpkg -s chromium chromium-driver >/dev/null 2>&1; then
    log "Chromium present"
    return
  fi
  log "installing Chromium and ChromeDriver (the leaderboard page test)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq chromium chromium-driver >/dev/null
}

install_system_packages() {
  local major; major=$(mesa_major)
  if [ -n "$major" ] && [ "$major" -ge 24 ] && dpkg -s libvulkan1 >/dev/null 2>&1; then
    log "Mesa $major lavapipe present"
    return
  fi
  local debian; debian=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo unknown)
  export DEBIAN_FRONTEND=noninteractive
  if [ "$debian" = 12 ]; then
    # Bookworm ships Mesa 22.3, whose lavapipe SAPIEN refuses; backports has Mesa 25.
    log "Debian 12: installing Mesa lavapipe from bookworm-backports"
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb http://deb.debian.org/debian bookworm-backports main" \
        | as_root tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    as_root apt-get update -qq
    as_root apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    log "Debian $debian: installing Mesa lavapipe as shipped"
    as_root apt-get update -qq
    as_root apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
  major=$(mesa_major)
  if [ -z "$major" ] || [ "$major" -lt 24 ]; then
    echo "setup: need Mesa >= 24.3 lavapipe for SAPIEN, found '${major:-none}'" >&2
    exit 1
  fi
}

install_python_packages() {
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
  local stamp="$VENV/.aem-bench-installed"
  local want; want=$( (cat pyproject.toml; echo "$TORCH_VERSION $TORCHVISION_VERSION") | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "python packages up to date"
    return
  fi
  # torch first and pinned, so that nothing the package asks for pulls another build.
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
}

install_system_packages
install_browser
install_python_packages
log "ready: $VENV"
