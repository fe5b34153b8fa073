#!/usr/bin/env bash
# Installs what `make test` needs on a Debian machine, or says what to install.
set -euo pipefail

missing=()
command -v gpg >/dev/null || missing+=(gnupg)
command -v gpgconf >/dev/null || missing+=(gnupg)
command -v gcc >/dev/null || missing+=(gcc)   # the race detector needs cgo; diff tests compile C
command -v readelf >/dev/null || missing+=(binutils)
command -v systemd-analyze >/dev/null || missing+=(systemd)
# The QEMU lab: real kernels under emulation, busybox for their initramfs,
# and kbuild's needs for building livepatch modules.
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[ -x /bin/busybox ] || missing+=(busybox-static)
# UEFI firmware, for guests whose modules need EFI (efivarfs).
[ -e /usr/share/ovmf/OVMF.fd ] || missing+=(ovmf)
command -v strip >/dev/null || missing+=(binutils)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
command -v make >/dev/null || missing+=(make)
command -v git >/dev/null || missing+=(git)
# The man pages are checked as lintian checks them: groff and man.
command -v groff >/dev/null || missing+=(groff-base)
command -v man >/dev/null || missing+=(man-db)
# Building kernel units from source (package ksrc): kbuild's prepare step
# and the compiler the Debian 12 kernel was built with; linux-source
# tarballs are xz.
command -v gcc-12 >/dev/null || missing+=(gcc-12)
command -v flex >/dev/null || missing+=(flex)
command -v bison >/dev/null || missing+=(bison)
command -v bc >/dev/null || missing+=(bc)
command -v pahole >/dev/null || missing+=(dwarves)
command -v xz >/dev/null || missing+=(xz-utils)
[ -e /usr/include/gelf.h ] || missing+=(libelf-dev)
[ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
# Fault tests: network namespaces, veth links and bridges (ip), random
# packet loss (nft; the kernel needs nf_tables, not sch_netem); delay
# goes through TAP devices (the kernel needs CONFIG_TUN).
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
# Metrics, dashboards and alert rules: promtool lints the exposition and
# unit-tests the rules; a real Prometheus runs every dashboard query.
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus >/dev/null || missing+=(prometheus)
# The Debian package test: lintian checks the package as Debian's archive
# would, dpkg-parsechangelog reads its changelog.
command -v lintian >/dev/null || missing+=(lintian)
command -v dpkg-parsechangelog >/dev/null || missing+=(dpkg-dev)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
	exit 0
fi
echo "the tests need: ${missing[*]}" >&2
echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
exit 1
