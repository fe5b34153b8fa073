#!/usr/bin/env bash
# A walk through splicefleet with a real livepatch module: two signing keys,
# a bundle, a 2-of-2 trust policy, a tampered copy that is refused, then
# apply, view and undo on a simulated kernel (the real kernel comes with the
# QEMU lab). Run by `make demo`; writes into demo/ (or $DEMO_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

sf=bin/splicefleet
dir=${DEMO_DIR:-demo}
module=kmod/testdata/livepatch-cmdline/livepatch_cmdline.ko
rm -rf "$dir" && mkdir -p "$dir"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $sf version
step $sf key generate --uid "Alice Release <alice@example.com>" --out "$dir/alice"
step $sf key generate --uid "Bob Security <bob@example.com>" --out "$dir/bob"
cat "$dir/alice.pub.asc" "$dir/bob.pub.asc" > "$dir/trusted.asc"

step $sf create --module "$module" --id cmdline-demo --version 1 \
	--cve CVE-2026-0001 --description "replace /proc/cmdline (demo)" \
	--expires 720h -o "$dir/cmdline.splice"
step $sf sign --key "$dir/alice.sec.asc" "$dir/cmdline.splice"
echo; echo "# one signature is not enough for a 2-of-2 policy:"
step $sf verify --keyring "$dir/trusted.asc" --threshold 2 "$dir/cmdline.splice" || true
step $sf sign --key "$dir/bob.sec.asc" "$dir/cmdline.splice"
step $sf verify --keyring "$dir/trusted.asc" --threshold 2 "$dir/cmdline.splice"
step $sf inspect "$dir/cmdline.splice"

echo; echo "# a copy whose module was changed after signing is refused:"
cp "$dir/cmdline.splice" "$dir/tampered.splice"
# Rewrite the module's vermagic ("SMP preempt" becomes "SMP PREEMPT").
at=$(grep -obUa 'SMP preempt' "$dir/tampered.splice" | head -n1 | cut -d: -f1)
printf 'SMP PREEMPT' | dd of="$dir/tampered.splice" bs=1 seek="$at" conv=notrunc status=none
step $sf verify --keyring "$dir/trusted.asc" --threshold 2 "$dir/tampered.splice" || true

if command -v gpg >/dev/null; then
	echo; echo "# GnuPG agrees with the signatures:"
	export GNUPGHOME="$dir/gnupg" && mkdir -m 700 -p "$GNUPGHOME"
	gpg --batch --quiet --import "$dir/trusted.asc" 2>/dev/null
	$sf manifest "$dir/cmdline.splice" > "$dir/cmdline.manifest"
	$sf manifest --signatures "$dir/cmdline.splice" > "$dir/cmdline.sig.asc"
	step gpg --batch --verify "$dir/cmdline.sig.asc" "$dir/cmdline.manifest"
	gpgconf --kill gpg-agent 2>/dev/null || true
fi
echo; echo "# the host side, on a SIMULATED kernel (a test double kept in $dir/kernel):"
host=(--state-dir "$dir/state" --kernel "sim:$dir/kernel")
step $sf apply "${host[@]}" --keyring "$dir/trusted.asc" --threshold 2 "$dir/cmdline.splice"
step $sf view "${host[@]}"
echo; echo "# the tampered copy never reaches the kernel:"
step $sf apply "${host[@]}" --keyring "$dir/trusted.asc" --threshold 2 "$dir/tampered.splice" || true
step $sf undo "${host[@]}" cmdline-demo
step $sf view "${host[@]}"
echo; echo "demo files are in $dir/"
