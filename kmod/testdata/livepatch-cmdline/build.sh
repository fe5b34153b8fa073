#!/bin/bash
# Rebuild livepatch_cmdline.ko, the real livepatch fixture read by
# kmod's tests, against Debian 12's current cloud kernel headers.
#
# Nothing is installed on the system: the header packages are downloaded
# with `apt-get download` into a cache folder and unpacked there with
# `dpkg -x`. Needs root (or a working apt), gcc-12, make, binutils.
#
# Steps:
#   1. apt-get update, then read the kernel ABI (e.g. 6.1.0-56) from the
#      dependency of the linux-headers-cloud-amd64 metapackage.
#   2. apt-get download linux-headers-<abi>-cloud-amd64,
#      linux-headers-<abi>-common and linux-kbuild-6.1 (same version).
#   3. dpkg -x all three into one folder.
#   4. The flavour headers' Makefile includes the common headers by an
#      absolute /usr/src path; point that include into the unpacked tree.
#   5. make -C <flavour headers> M=<build dir> modules
#   6. strip --strip-debug, copy the .ko next to this script.
#
# Usage: build.sh [cache-dir]   (default: <repo>/.cache/kbuild, git-ignored)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${1:-$repo/.cache/kbuild}

apt-get update -qq

# 1. Kernel ABI of the cloud flavour, e.g. "linux-headers-6.1.0-56-cloud-amd64".
flavour_pkg=$(apt-cache depends linux-headers-cloud-amd64 |
	awk '$1 == "Depends:" && $2 ~ /^linux-headers-.*-cloud-amd64$/ { print $2; exit }')
if [ -z "$flavour_pkg" ]; then
	echo "build.sh: cannot find the cloud kernel headers package" >&2
	exit 1
fi
abi=${flavour_pkg#linux-headers-}
abi=${abi%-cloud-amd64}
version=$(apt-cache show "$flavour_pkg" | awk '$1 == "Version:" { print $2; exit }')
echo "build.sh: kernel ABI $abi, package version $version"

# 2. Download the three packages (exact versions) into the cache.
debs=$cache/debs
mkdir -p "$debs"
(
	cd "$debs"
	for p in "linux-headers-$abi-cloud-amd64" "linux-headers-$abi-common" linux-kbuild-6.1; do
		if ! ls "${p}_${version}_"*.deb >/dev/null 2>&1; then
			apt-get download -q -o APT::Sandbox::User=root "$p=$version"
		fi
	done
)

# 3. Unpack into a fresh root.
root=$cache/root-$abi
rm -rf "$root"
mkdir -p "$root"
for p in "linux-headers-$abi-cloud-amd64" "linux-headers-$abi-common" linux-kbuild-6.1; do
	dpkg -x "$debs/${p}_${version}_"*.deb "$root"
done

# 4. Repoint the absolute include of the common headers into $root.
headers=$root/usr/src/linux-headers-$abi-cloud-amd64
sed -i "s#/usr/src/linux-headers-$abi-common#$root/usr/src/linux-headers-$abi-common#g" "$headers/Makefile"
grep -q "$root/usr/src/linux-headers-$abi-common" "$headers/Makefile"

# 5. Build in a scratch copy so no build products land next to the source.
work=$cache/build-livepatch-cmdline
rm -rf "$work"
mkdir -p "$work"
cp "$here/livepatch_cmdline.c" "$here/Kbuild" "$work/"
make -C "$headers/" M="$work" modules

# 6. Drop debug info and keep the module next to its source.
strip --strip-debug "$work/livepatch_cmdline.ko"
cp "$work/livepatch_cmdline.ko" "$here/livepatch_cmdline.ko"
ls -l "$here/livepatch_cmdline.ko"
