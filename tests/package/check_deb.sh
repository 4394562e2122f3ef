#!/usr/bin/env bash
# Builds the Debian package (cpack) from a build directory, unpacks it with
# dpkg-deb and checks what an operator gets: the program, headers and CMake
# package files, the systemd unit (hardened, its own user, verified with
# systemd-analyze where that exists), the config as a conffile, and
# maintainer scripts that create the user.
#   check_deb.sh BUILD_DIR WORK_DIR
set -euo pipefail
build=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/out/*.deb)
echo "package: $deb"
dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
root=$work/root
fail=0
need() { [ -e "$root/$1" ] || { echo "missing: /$1"; fail=1; }; }
for f in usr/bin/orch usr/include/orch/engine.h usr/include/orch/trace.h usr/include/orch/version.h \
         usr/include/orch/export.h etc/orch/config.json etc/default/orch \
         usr/share/doc/orch/README.md usr/share/doc/orch/openapi.json; do
  need "$f"
done
# The unit in /usr/lib/systemd/system (or /lib/...: the same with merged /usr).
unit=$(find "$root/usr/lib/systemd/system" "$root/lib/systemd/system" -name orch.service 2>/dev/null | head -1 || true)
[ -n "$unit" ] || { echo "missing: orch.service"; exit 1; }
cmake_dir=$(find "$root/usr/lib" -path '*/cmake/orch/orchConfig.cmake' -printf '%h\n' | head -1)
[ -n "$cmake_dir" ] || { echo "missing: orchConfig.cmake"; fail=1; }
[ -n "$cmake_dir" ] && [ -e "$cmake_dir/orchConfigVersion.cmake" ] && [ -e "$cmake_dir/orchTargets.cmake" ] ||
  { echo "missing: orch CMake package files"; fail=1; }
[ -x "$root/usr/bin/orch" ] || { echo "/usr/bin/orch is not executable"; fail=1; }
"$root/usr/bin/orch" --version | grep -q '^orch v' || { echo "the packaged orch does not run"; fail=1; }
# The packaged config is valid as shipped.
"$root/usr/bin/orch" serve --check-config "$root/etc/orch/config.json" || { echo "the shipped config is invalid"; fail=1; }

control=$work/control
grep -q '^Package: orch$' "$control/control" || { echo "control: wrong package name"; fail=1; }
grep -q '^Depends: .*libc6' "$control/control" || { echo "control: no shared-library dependencies"; fail=1; }
grep -qx '/etc/orch/config.json' "$control/conffiles" || { echo "the config is not a conffile"; fail=1; }
for s in postinst prerm postrm; do
  [ -x "$control/$s" ] || { echo "missing maintainer script $s"; fail=1; continue; }
  sh -n "$control/$s" || { echo "$s: syntax error"; fail=1; }
done
grep -q 'useradd --system' "$control/postinst" || { echo "postinst creates no system user"; fail=1; }

for line in 'User=orch' 'Group=orch' 'ExecStart=/usr/bin/orch serve --config /etc/orch/config.json' \
            'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/orch' 'PrivateTmp=yes' \
            'ProtectHome=yes' 'StateDirectory=orch' 'CapabilityBoundingSet=' 'WantedBy=multi-user.target'; do
  grep -q "^$line" "$unit" || { echo "unit lacks $line"; fail=1; }
done
# systemd-analyze verify: exit status 0 even for unknown keys or bad values,
# so any line it prints about the unit is a failure. The unit is checked as
# installed, its program path pointing at the unpacked binary.
verify_unit() {  # FILE -> prints the problems, returns 1 when there are some
  local out
  out=$(systemd-analyze verify "$1" 2>&1) || { echo "$out"; return 1; }
  if echo "$out" | grep -q "$(basename "$1")"; then echo "$out"; return 1; fi
  return 0
}
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$work/verify"
  sed "s|/usr/bin/orch|$root/usr/bin/orch|g" "$unit" >"$work/verify/orch.service"
  if verify_unit "$work/verify/orch.service"; then
    echo "systemd-analyze verify: ok"
  else
    echo "systemd-analyze verify found problems in orch.service"; fail=1
  fi
  # The check itself can fail: a unit with a wrong value is caught.
  sed 's|^ProtectSystem=strict|ProtectSystem=sometimes|' "$work/verify/orch.service" >"$work/verify/broken.service"
  if verify_unit "$work/verify/broken.service" >/dev/null; then
    echo "systemd-analyze verify did not catch a broken unit"; fail=1
  fi
else
  echo "systemd-analyze not available: unit not verified"
fi
[ $fail -eq 0 ] && echo "package layout ok"
exit $fail
