#!/usr/bin/env bash
# cmake/version.cmake (the version in `switchboard version` and /metrics build_info):
# a tag vX.Y.Z gives X.Y.Z, commits after it -X.Y.Z-N-gHASH, uncommitted changes -dirty; no
# tag, no git, or a source folder inside another repository gives the CMakeLists fallback.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v git >/dev/null || { echo "SKIP: git is missing"; exit 77; }
v() { rm -f "$T/v.h"; cmake -DSRC="$1" -DOUT="$T/v.h" -DFALLBACK=9.9.9 -P "$SRC/cmake/version.cmake";
      sed -n 's/^#define SB_BUILD_VERSION "\(.*\)"$/\1/p' "$T/v.h"; }
g() { git -C "$T/repo" -c user.name=t -c user.email=t@t "$@" >/dev/null; }

mkdir "$T/repo" && g init -q && echo a > "$T/repo/a" && g add a && g commit -qm a
[[ $(v "$T/repo") == 9.9.9 ]] || fail "no tag: $(v "$T/repo")"
g tag -a v1.2.3 -m r
[[ $(v "$T/repo") == 1.2.3 ]] || fail "on the tag: $(v "$T/repo")"
g tag not-a-release
echo b > "$T/repo/a" && g commit -qam b
[[ $(v "$T/repo") =~ ^1\.2\.3-1-g[0-9a-f]+$ ]] || fail "after the tag: $(v "$T/repo")"
echo c > "$T/repo/a"
[[ $(v "$T/repo") =~ ^1\.2\.3-1-g[0-9a-f]+-dirty$ ]] || fail "dirty: $(v "$T/repo")"
mkdir "$T/repo/tarball"
[[ $(v "$T/repo/tarball") == 9.9.9 ]] || fail "inside another repository: $(v "$T/repo/tarball")"
mkdir "$T/plain"
[[ $(v "$T/plain") == 9.9.9 ]] || fail "no git: $(v "$T/plain")"
# an unchanged version leaves the header alone (nothing rebuilds)
cmake -DSRC="$T/plain" -DOUT="$T/v.h" -DFALLBACK=9.9.9 -P "$SRC/cmake/version.cmake"
touch -d '2000-01-01' "$T/v.h"
cmake -DSRC="$T/plain" -DOUT="$T/v.h" -DFALLBACK=9.9.9 -P "$SRC/cmake/version.cmake"
[[ $(stat -c %Y "$T/v.h") == $(date -d '2000-01-01' +%s) ]] || fail "header rewritten"
echo "version: tag, describe, dirty and fallbacks all as documented"
