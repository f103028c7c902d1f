#!/usr/bin/env bash
# `make deb`: builds dist/switchboard_VERSION_ARCH.deb with debhelper (debian/rules).
#   scripts/deb.sh                 configure and build build-deb/ (Release, prefix /usr, Debian's
#                                  hardening flags), then package it
#   scripts/deb.sh BUILD_DIR [OUT] package an already-built CMake tree (the package test does
#                                  this with the ASan tree: no second compile)
# The version is the build's (git describe --tags, else CMakeLists.txt's), made a valid Debian
# version: v0.2.0-3-gabc1234 -> 0.2.0+3.gabc1234; SB_DEB_VERSION overrides it. debian/ is
# copied to a scratch folder first, so the source tree is left untouched.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-}
OUT=$(mkdir -p "${2:-$SRC/dist}" && cd "${2:-$SRC/dist}" && pwd)

if [[ -z $BUILD ]]; then
  BUILD=$SRC/build-deb
  eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
  CFLAGS="$CFLAGS $CPPFLAGS" cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_INSTALL_PREFIX=/usr -DBUILD_TESTING=OFF ${CMAKE_FLAGS:-} >/dev/null
  cmake --build "$BUILD" -j "$(nproc)"
fi
BUILD=$(cd "$BUILD" && pwd)
[[ -x $BUILD/switchboard ]] || { echo "deb: no $BUILD/switchboard: build it first" >&2; exit 1; }

version=${SB_DEB_VERSION:-$(sed -n 's/^#define SB_BUILD_VERSION "\(.*\)"$/\1/p' \
                             "$BUILD/generated/sb_build_version.h")}
version=$(printf '%s' "$version" | sed -e 's/-/+/' -e 's/-/./g')
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || { echo "deb: bad version '$version'" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -a "$SRC/debian" "$stage/"
rm -rf "$stage/debian/switchboard" "$stage/debian/.debhelper"
(cd "$stage" && SB_PREBUILT=1 SB_SRC_DIR="$SRC" SB_BUILD_DIR="$BUILD" SB_VERSION="$version" \
   SB_DIST="$OUT" fakeroot debian/rules binary) > "$stage/log" 2>&1 ||
  { cat "$stage/log" >&2; echo "deb: debian/rules binary failed" >&2; exit 1; }
deb="$OUT/switchboard_${version}_$(dpkg --print-architecture).deb"
[[ -f $deb ]] || { cat "$stage/log" >&2; echo "deb: $deb was not made" >&2; exit 1; }
echo "$deb"
