#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Package test: build the .deb with cpack, unpack it into a scratch root (dpkg -x, as an install would lay it
# out), then check what a user gets: `quire --version` runs without a display, the desktop entry and the
# AppStream metainfo validate, icons are there at every size, Depends is declared, and, when the CUDA backend is
# built, the backend and the CUDA runtime/cuBLAS libraries it needs are in /usr/lib/quire and resolve there.
set -uo pipefail

cpack=cpack build="" version="" app_id="" sizes="" privdir=lib/quire cuda_libs="" backend=none
while [ $# -gt 0 ]; do
  case "$1" in
    --cpack) cpack=$2 ;; --build-dir) build=$2 ;; --version) version=$2 ;; --app-id) app_id=$2 ;;
    --icon-sizes) sizes=$2 ;; --private-libdir) privdir=$2 ;; --cuda-libs) cuda_libs=$2 ;;
    --cuda-backend) backend=$2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift 2
done

failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
die() { echo "FAIL: $*"; exit 1; }

out="$build/packaging-test"
rm -rf "$out" && mkdir -p "$out"
echo "== cpack -G DEB (into $out)"
start=$(date +%s)
"$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$out" >"$out/cpack.log" 2>&1 ||
  { cat "$out/cpack.log"; die "cpack failed"; }
echo "cpack took $(( $(date +%s) - start ))s"
shopt -s nullglob
debs=("$out"/quire_*.deb)
[ ${#debs[@]} -eq 1 ] || die "expected one quire_*.deb in $out, found ${#debs[@]}"
deb=${debs[0]}
ok "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# Control fields
[ "$(dpkg-deb -f "$deb" Package)" = quire ] && ok "Package: quire" || fail "Package field is not quire"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] && ok "Version: $version" || fail "Version is not $version"
depends=$(dpkg-deb -f "$deb" Depends)
[ -n "$depends" ] && ok "Depends: $depends" || fail "Depends field is empty"
# shlibdeps must have run (libc6, Qt) and the plugin packages it cannot see must be declared by hand.
for dep in libc6 libqt6core6 qt6-qpa-plugins; do
  [[ ",$depends" =~ [,\ ]$dep[\ ,\(]|[,\ ]$dep$ ]] && ok "Depends names $dep" || fail "Depends lacks $dep"
done
for field in Maintainer Section Description; do
  [ -n "$(dpkg-deb -f "$deb" "$field")" ] && ok "$field declared" || fail "$field missing"
done

# Unpack into a scratch root
root="$out/root"
dpkg -x "$deb" "$root" || die "dpkg -x failed"
bin="$root/usr/bin/quire"
[ -x "$bin" ] || die "usr/bin/quire missing from the package"
# `quire --version` must work with no display at all (headless commands never create a QApplication).
vout=$(env -u DISPLAY -u WAYLAND_DISPLAY -u QT_QPA_PLATFORM "$bin" --version 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ ${vout,,} == *quire* ]] && [[ $vout == *"$version"* ]]; then
  ok "installed quire --version: $vout"
else
  fail "installed quire --version (exit $rc): $vout"
fi
missing=$(ldd "$bin" 2>&1 | grep "not found")
[ -z "$missing" ] && ok "quire's libraries resolve" || fail "quire has unresolved libraries: $missing"

desktop="$root/usr/share/applications/$app_id.desktop"
if [ -f "$desktop" ]; then
  dv=$(desktop-file-validate "$desktop" 2>&1); rc=$?
  [ $rc -eq 0 ] && ! grep -q 'error:' <<<"$dv" && ok "desktop-file-validate $app_id.desktop" ||
    fail "desktop-file-validate: $dv"
  grep -q '^Exec=quire %F$' "$desktop" && ok "Exec=quire %F" || fail "desktop entry Exec is not 'quire %F'"
  mimes=$(sed -n 's/^MimeType=//p' "$desktop")
  for m in application/pdf image/png image/jpeg image/webp image/bmp image/gif image/tiff; do
    [[ ";$mimes" == *";$m;"* ]] || fail "desktop entry MimeType lacks $m"
  done
  ok "MimeType: $mimes"
  icon=$(sed -n 's/^Icon=//p' "$desktop")
  [ "$icon" = "$app_id" ] && ok "Icon=$icon" || fail "desktop entry Icon is '$icon', expected $app_id"
else
  fail "desktop entry $desktop missing"
fi

metainfo="$root/usr/share/metainfo/$app_id.metainfo.xml"
if [ -f "$metainfo" ]; then
  av=$(appstreamcli validate --no-net "$metainfo" 2>&1) && ok "appstreamcli validate --no-net" ||
    fail "appstreamcli validate: $av"
  grep -q '<project_license>GPL-3.0-or-later</project_license>' "$metainfo" && ok "metainfo licence" ||
    fail "metainfo lacks project_license GPL-3.0-or-later"
  grep -q "<launchable type=\"desktop-id\">$app_id.desktop</launchable>" "$metainfo" && ok "metainfo launchable" ||
    fail "metainfo launchable is not $app_id.desktop"
else
  fail "metainfo $metainfo missing"
fi

svg="$root/usr/share/icons/hicolor/scalable/apps/$app_id.svg"
[ -s "$svg" ] && grep -q '<svg' "$svg" && ok "scalable SVG icon" || fail "scalable icon $svg missing"
for s in $sizes; do
  png="$root/usr/share/icons/hicolor/${s}x${s}/apps/$app_id.png"
  desc=$(file -b "$png" 2>/dev/null)
  [[ $desc == "PNG image data, $s x $s,"* ]] && ok "icon ${s}x${s}" || fail "icon $png: ${desc:-missing}"
done

libdir="$root/usr/$privdir"
if [ "$backend" != none ]; then
  so="$libdir/$backend"
  [ -f "$so" ] && ok "CUDA backend $privdir/$backend" || fail "CUDA backend $so missing"
  for lib in $cuda_libs; do
    [ -f "$libdir/$lib" ] && ok "bundled $lib ($(du -h "$libdir/$lib" | cut -f1))" || fail "bundled $lib missing"
  done
  if [ -f "$so" ]; then
    # Every CUDA library the backend needs must come from the package, not from the build machine's toolkit.
    deps=$(ldd "$so" 2>&1)
    while read -r name _ path _; do
      case "$name" in libcudart*|libcublas*)
        [[ $path == "$libdir/"* ]] && ok "$backend -> $name from the package" ||
          fail "$backend -> $name resolves to '$path', not $libdir" ;;
      esac
    done <<<"$deps"
    grep -q "not found" <<<"$deps" && fail "unresolved libraries for $backend: $(grep 'not found' <<<"$deps")"
  fi
else
  echo "note: no CUDA backend in this build; the package carries none"
  [ ! -e "$libdir" ] || [ -z "$(ls -A "$libdir")" ] || echo "note: $privdir holds: $(ls "$libdir")"
fi

echo "packaging: $failures failure(s)"
[ $failures -eq 0 ]
