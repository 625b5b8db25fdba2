#!/usr/bin/env bash
# artlab developer entry point: sets up .venv idempotently, then runs a task.
#   ./dev.sh demo [--quick]   build the environment and run the tour (writes artlab-demo/index.html)
#   ./dev.sh test [pytest args]  build the environment and run the whole test suite (25 slowest listed)
#   ./dev.sh test-fast [pytest args]  the same without browser, notebook and slow tests (< 2 min on 2 cores)
#   ./dev.sh lab [options]    JupyterLab on your working copies of the lessons (~/artlab-lessons; artlab lab --help)
#   ./dev.sh bench            the benchmarks
#   ./dev.sh setup            only the environment
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${ARTLAB_VENV:-.venv}
BIN="$VENV/bin"
STAMP="$VENV/.artlab-installed"

say() { printf '\033[1m[artlab]\033[0m %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

TOOLS=${ARTLAB_TOOLS:-$HOME/.cache/artlab/tools}  # holds the uv installer, shared by every checkout

need_python_venv() {
  # Debian's python3 lacks ensurepip until python3-venv is installed.
  "$PYTHON" -m venv --help >/dev/null 2>&1 && "$PYTHON" -c 'import ensurepip' 2>/dev/null && return 0
  if is_root && command -v apt-get >/dev/null; then
    say "python3-venv is missing: installing it with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && return 0
  fi
  say "cannot create virtual environments: install python3-venv (sudo apt-get install python3-venv) and retry"
  exit 1
}

find_uv() {
  if command -v uv >/dev/null; then UV=$(command -v uv); return; fi
  UV="$TOOLS/bin/uv"
  [ -x "$UV" ] && return
  need_python_venv
  say "installing the uv installer into $TOOLS (once per machine)"
  rm -rf "$TOOLS" && "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check uv
}

# ARTLAB_TORCH=cpu installs PyTorch's CPU-only wheels (4 GB less than the default CUDA build, which
# torchvision's PyPI wheels require); any uv --torch-backend value works (cu126, rocm6.3, auto). They come
# from download.pytorch.org, so that site must be reachable. The choice is kept in .venv/.artlab-torch, so
# later runs need not repeat it; ARTLAB_TORCH=pypi goes back to PyPI's build. A change reinstalls torch.
TORCH_BACKEND=${ARTLAB_TORCH:-$(cat "$VENV/.artlab-torch" 2>/dev/null || echo pypi)}

setup() {
  local want
  want="$(sha256sum pyproject.toml | cut -c1-16) torch=$TORCH_BACKEND"
  if [ -x "$BIN/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then return; fi
  local t0=$SECONDS
  find_uv
  if [ ! -x "$BIN/python" ]; then
    say "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$UV" venv -q --python "$PYTHON" "$VENV"
  fi
  local backend=()
  if [ "$TORCH_BACKEND" != pypi ]; then
    backend=(--torch-backend "$TORCH_BACKEND")
    say "PyTorch from its $TORCH_BACKEND wheels (ARTLAB_TORCH=$TORCH_BACKEND, index download.pytorch.org)"
  fi
  if [ -f "$STAMP" ] && [ "$(cat "$VENV/.artlab-torch" 2>/dev/null || echo pypi)" != "$TORCH_BACKEND" ]; then
    backend+=(--reinstall-package torch --reinstall-package torchvision)  # another build of the same version
  fi
  say "installing artlab and its dependencies (first time: a few minutes, mostly PyTorch)"
  if ! "$UV" pip install --compile-bytecode --python "$BIN/python" "${backend[@]}" -e ".[test,bench]"; then
    # No network (CI, a train): everything may still be in uv's cache from an earlier install.
    say "online install failed; retrying from uv's local cache (--offline)"
    "$UV" pip install --compile-bytecode --offline --python "$BIN/python" "${backend[@]}" -e ".[test,bench]"
  fi
  echo "$TORCH_BACKEND" >"$VENV/.artlab-torch"
  echo "$want" >"$STAMP"
  say "environment ready in $((SECONDS - t0)) s"
}

browser() {
  # The real-browser widget tests need Debian's chromium. Install it when we can;
  # without it those tests skip locally (and fail under CI=true, so CI can't skip them).
  [ -x /usr/bin/chromium ] && return 0
  if is_root && command -v apt-get >/dev/null; then bash .ci/ensure-chromium.sh && return 0; fi
  say "chromium not found: the browser tests will be skipped (install with: sudo bash .ci/ensure-chromium.sh)"
}

task=${1:-help}; shift || true
case "$task" in
  setup) setup ;;
  demo)
    setup
    t0=$SECONDS
    "$BIN/artlab" demo --out artlab-demo "$@"
    say "demo finished in $((SECONDS - t0)) s: open artlab-demo/index.html in a browser"
    ;;
  test)
    setup
    browser
    exec "$BIN/python" -m pytest --durations=25 "$@"
    ;;
  test-fast)
    # The edit-run loop: no Chromium, no headless notebooks, nothing marked slow (so no browser setup).
    setup
    exec "$BIN/python" -m pytest -m "not browser and not notebook and not slow" "$@"
    ;;
  lab) setup; exec "$BIN/artlab" lab "$@" ;;
  bench) setup; exec "$BIN/python" benchmarks/run.py "$@" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
