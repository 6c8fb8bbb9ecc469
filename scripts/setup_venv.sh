#!/usr/bin/env bash
# Creates .venv (if missing) with torch first, then the pinned stack, then robotrl, robotrl-sim and
# robotrl-real in editable mode. Installs Debian's headless-GL packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

GL_PACKAGES=(libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri)
missing=()
for pkg in "${GL_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing headless rendering packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "Missing Debian packages for headless MuJoCo rendering: ${missing[*]}" >&2
    echo "Run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# torch first: a plain `torch` requirement would pull several GB of CUDA wheels.
"${pip[@]}" install "torch==2.13.0"
"${pip[@]}" install -r requirements/lock.txt -r requirements/dev.txt
# MetaWorld cannot be a pin in lock.txt: metaworld 3.1.1 requires mujoco==3.3.0, which no resolver
# reconciles with our mujoco 3.17.0. Install it alone without its dependencies (the others it needs,
# gymnasium, numpy, scipy and imageio, are in lock.txt); robotrl_sim._metaworld_compat makes it run
# on mujoco 3.17. `pip check` will keep reporting the mujoco pin: that is expected.
"${pip[@]}" install --no-deps "metaworld==3.1.1"
"${pip[@]}" install --no-deps -e . -e sim -e real_robot
touch .venv/.installed
echo "Environment ready: .venv"
