#!/usr/bin/env bash
# Installs what Switchboard needs to build, run and test, from Debian 12 packages and the npm
# registry. Idempotent: it installs only what is missing, so `make` can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build pkg-config git
      libuv1-dev libwebsockets-dev libwebsockets-evlib-uv libhiredis-dev libcjson-dev
      libjwt-dev libssl-dev libcurl4-openssl-dev libcmocka-dev redis-server redis-tools
      nodejs npm python3 python3-redis curl clang libclang-rt-14-dev
      prometheus   # promtool: the e2e tests validate both /metrics outputs with a real parser
      python3-prometheus-client python3-yaml # e2e/observability_test.py: /metrics text, alerts.yml
      chromium     # headless browser of the dashboard's e2e test (driven by npm playwright-core)
      debhelper devscripts fakeroot   # make deb and its test
      haproxy nginx)                  # the load balancers of the several-gateways test

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from outside Debian (e.g. a preinstalled node): accept a working node.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own haproxy and nginx on free ports: do not leave the system
  # services that installing them just started listening on :80.
  if [[ -d /run/systemd/system ]]; then
    for svc in haproxy nginx; do
      [[ " ${missing[*]} " == *" $svc "* ]] && $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
  fi
fi

# Node packages: web/ holds the browser assets the gateway serves with the dashboard (the
# official socket.io client); tests/e2e the real clients of the end-to-end tests.
for dir in web tests/e2e; do
  if [[ -f $dir/package-lock.json && ( ! -d $dir/node_modules || $dir/package-lock.json -nt $dir/node_modules/.stamp ) ]]; then
    echo "deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
  fi
done
