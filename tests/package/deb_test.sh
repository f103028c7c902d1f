#!/usr/bin/env bash
# The Debian package, end to end (CTest label `package`): scripts/deb.sh packages the build
# tree this test belongs to (SB_BUILD_DIR: no second compile), then
#   - the layout (dpkg -x): binary, dashboard, example settings, units, sysusers, docs; no
#     static library or headers; runtime dependencies declared by dpkg-shlibdeps;
#   - the extracted binary runs: `version` (the build's version), `--help`, and a gateway
#     that serves the installed dashboard and switchboard_build_info on /metrics;
#   - the units pass `systemd-analyze verify` and its offline security review;
#   - dpkg --root into a scratch root (maintainer scripts run chrootless, DPKG_ROOT set):
#     install (system user, settings root:switchboard 0640), upgrade keeping an edited
#     conffile, remove (settings stay), purge (nothing left).
# A tool that is missing skips its part (or the whole test, exit 77) with the reason printed.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${SB_BUILD_DIR:?SB_BUILD_DIR: the built CMake tree}
REDIS_SERVER=${SB_REDIS_SERVER:-redis-server}
T=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
skip_all() { echo "SKIP: $*"; exit 77; }

for tool in dpkg-deb dh fakeroot dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || skip_all "$tool is missing (apt-get install debhelper fakeroot)"
done

# --- build ------------------------------------------------------------------------------------
start=$(date +%s)
deb=$(DEB_BUILD_OPTIONS=noautodbgsym "$SRC/scripts/deb.sh" "$BUILD" "$T/dist") ||
  fail "scripts/deb.sh failed"
version=$(sed -n 's/^#define SB_BUILD_VERSION "\(.*\)"$/\1/p' "$BUILD/generated/sb_build_version.h")
[[ $(basename "$deb") == switchboard_*_"$(dpkg --print-architecture)".deb ]] || fail "name $deb"
ok "built $(basename "$deb") in $(( $(date +%s) - start )) s"

# --- layout -------------------------------------------------------------------------------------
X=$T/x
dpkg-deb -x "$deb" "$X"
for f in usr/bin/switchboard usr/share/switchboard/web/index.html usr/share/switchboard/web/app.js \
         usr/share/switchboard/web/style.css etc/switchboard/switchboard.env \
         etc/switchboard/gateway.env etc/switchboard/agent.env \
         lib/systemd/system/switchboard-gateway.service lib/systemd/system/switchboard-agent@.service \
         usr/lib/sysusers.d/switchboard.conf usr/share/doc/switchboard/copyright \
         usr/share/doc/switchboard/OPERATIONS.md usr/share/switchboard/monitoring/switchboard.json \
         usr/share/switchboard/monitoring/alerts.yml; do
  [[ -e $X/$f ]] || fail "the package lacks /$f"
done
[[ -x $X/usr/bin/switchboard ]] || fail "/usr/bin/switchboard is not executable"
[[ ! -e $X/usr/include && -z $(find "$X" -name '*.a') ]] || fail "headers or a static library packaged"
[[ $(stat -c %a "$X/etc/switchboard/switchboard.env") == 640 ]] || fail "switchboard.env is not 0640"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libc6 libuv1 libwebsockets libwebsockets-evlib-uv libhiredis libcjson libjwt libssl systemd; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
dpkg-deb -f "$deb" Version | grep -qx "$(printf '%s' "$version" | sed -e 's/-/+/' -e 's/-/./g')" ||
  fail "package version is not the build's ($version)"
[[ $(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | sort | tr '\n' ' ') == \
   "/etc/switchboard/agent.env /etc/switchboard/gateway.env /etc/switchboard/switchboard.env " ]] ||
  fail "conffiles"
ok "layout, conffiles and Depends ($depends)"

# --- the installed binary runs --------------------------------------------------------------
SBX=$X/usr/bin/switchboard
[[ $("$SBX" version) == "switchboard $version" ]] || fail "version: $("$SBX" version)"
"$SBX" --help | grep -q "switchboard gateway" || fail "--help"
"$SBX" gateway --help | grep -q -- "--port" || fail "gateway --help"
ok "switchboard version: $version; --help"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 50 ms
  local until=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < until )) || fail "timed out waiting for $what"
    sleep 0.05
  done
}
rport=$(free_port)
"$REDIS_SERVER" --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" \
  --loglevel warning >"$T/redis.log" 2>&1 &
pids+=($!)
gport=$(free_port)
JWT_SECRET=pkgtest REDIS_URL=redis://127.0.0.1:$rport "$SBX" gateway --port "$gport" \
  --bind 127.0.0.1 >"$T/gateway.log" 2>&1 &
pids+=($!)
wait_for 30 "the installed gateway to answer /readyz" curl -fsS "http://127.0.0.1:$gport/readyz"
grep -q "dashboard: [0-9]* files from $X/usr/share/switchboard/web" "$T/gateway.log" ||
  fail "the gateway did not load the installed dashboard: $(grep dashboard "$T/gateway.log")"
curl -fsS "http://127.0.0.1:$gport/" | cmp -s - "$X/usr/share/switchboard/web/index.html" ||
  fail "/ is not the installed index.html"
curl -fsS "http://127.0.0.1:$gport/metrics" | grep -qE "^switchboard_build_info\{version=\"$version\",instance_id=\"[0-9a-f]{12}\"(,commit=\"[0-9a-f]{12}\")?\} 1$" ||
  fail "/metrics lacks switchboard_build_info"
ok "installed gateway serves the dashboard from /usr/share/switchboard/web and build_info"

# --- units ---------------------------------------------------------------------------------------
U=$X/lib/systemd/system
for key in 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'PrivateTmp=yes' 'ProtectHome=yes' \
           'RestrictAddressFamilies=' 'User=switchboard' 'EnvironmentFile=/etc/switchboard/switchboard.env' \
           'ExecStart=/usr/bin/switchboard'; do
  grep -q "^$key" "$U/switchboard-gateway.service" "$U/switchboard-agent@.service" || fail "units lack $key"
  [[ $(grep -c "^$key" "$U/switchboard-gateway.service" "$U/switchboard-agent@.service" | grep -c ':0$') == 0 ]] ||
    fail "a unit lacks $key"
done
grep -q '^ExecStart=/usr/bin/switchboard agent --type %i$' "$U/switchboard-agent@.service" ||
  fail "the agent's instance is not its job type"
if ! command -v systemd-analyze >/dev/null; then
  echo "skip: systemd-analyze is missing: units not verified"
else
  # verify checks that ExecStart exists: point the units at the extracted binary
  mkdir "$T/units"
  for u in switchboard-gateway.service switchboard-agent@.service; do
    sed "s|/usr/bin/switchboard|$SBX|" "$U/$u" > "$T/units/$u"
  done
  cp "$T/units/switchboard-agent@.service" "$T/units/switchboard-agent@rebalance.service"
  out=$(systemd-analyze verify "$T/units/switchboard-gateway.service" \
          "$T/units/switchboard-agent@rebalance.service" 2>&1) || fail "systemd-analyze verify: $out"
  [[ -z $out ]] || fail "systemd-analyze verify: $out"
  for u in switchboard-gateway.service switchboard-agent@rebalance.service; do
    score=$(systemd-analyze security --offline=true "$T/units/$u" 2>&1 |
            sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    [[ -n $score ]] || fail "systemd-analyze security gave no score for $u"
    awk -v s="$score" 'BEGIN { exit !(s < 3.0) }' || fail "$u exposure $score (want < 3.0)"
    echo "    $u: exposure $score"
  done
  ok "units pass systemd-analyze verify; exposure below 3.0 (OK)"
fi

# --- dpkg --root: install, upgrade, remove, purge ----------------------------------------------
R=$T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/etc"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
DPKG=(dpkg --root="$R" --log=/dev/null --force-script-chrootless --force-depends --force-not-root)
export PATH=$PATH:/usr/sbin:/sbin
if ! command -v systemd-sysusers >/dev/null; then
  echo "skip: systemd-sysusers is missing: not installed into a scratch root"; exit 0
fi
"${DPKG[@]}" -i "$deb" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -i"; }
"${DPKG[@]}" -s switchboard | grep -q '^Status: install ok installed' || fail "not installed"
grep -q '^switchboard:' "$R/etc/passwd" || fail "no switchboard user in the root's /etc/passwd"
gid=$(awk -F: '$1 == "switchboard" { print $3 }' "$R/etc/group")
[[ $(stat -c '%a %g' "$R/etc/switchboard/switchboard.env") == "640 $gid" ]] ||
  fail "switchboard.env is $(stat -c '%a %g' "$R/etc/switchboard/switchboard.env"), want 640 $gid"
[[ $("$R/usr/bin/switchboard" version) == "switchboard $version" ]] || fail "installed version"
ok "dpkg --root -i: installed, system user, settings 0640 root:switchboard"

# upgrade to the same contents under a higher version; an edited conffile is kept
echo 'JWT_SECRET=operator-secret' >> "$R/etc/switchboard/switchboard.env"
dpkg-deb -R "$deb" "$T/v2"
sed -i "s/^Version: .*/&+upgrade1/" "$T/v2/DEBIAN/control"
dpkg-deb -b "$T/v2" "$T/dist/v2.deb" >/dev/null
"${DPKG[@]}" -i "$T/dist/v2.deb" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "upgrade"; }
"${DPKG[@]}" -s switchboard | grep -q '^Version: .*+upgrade1$' || fail "not upgraded"
grep -q '^JWT_SECRET=operator-secret$' "$R/etc/switchboard/switchboard.env" ||
  fail "the upgrade lost the operator's setting"
ok "upgrade keeps the edited settings"

"${DPKG[@]}" -r switchboard >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -r"; }
[[ ! -e $R/usr/bin/switchboard && -f $R/etc/switchboard/switchboard.env ]] ||
  fail "remove: binary left or settings gone"
"${DPKG[@]}" -s switchboard | grep -q '^Status: deinstall ok config-files' || fail "remove state"
"${DPKG[@]}" -P switchboard >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -P"; }
left=$(cd "$R" && find . -type f ! -path './var/lib/dpkg/*' ! -path './etc/passwd*' \
         ! -path './etc/group*' ! -path './etc/shadow*' ! -path './etc/gshadow*' ! -path './etc/.pwd.lock' | sort)
[[ -z $left && ! -e $R/etc/switchboard ]] || fail "purge left: $left"
ok "remove keeps the settings, purge leaves nothing"
echo "package test: all parts passed in $(( $(date +%s) - start )) s"
