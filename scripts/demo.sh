#!/usr/bin/env bash
# A walk through splicefleet with a real livepatch module: two signing keys,
# a bundle, a 2-of-2 trust policy, a tampered copy that is refused, then
# apply, view and undo on a simulated kernel (the real kernel comes with the
# QEMU lab), then a local fleet of three agents that gossip the bundle to
# each other. Run by `make demo-host`; writes into demo/ (or $DEMO_DIR).
# (`make demo` runs `splicefleet demo`, the fleet and its rollouts.)
set -euo pipefail
cd "$(dirname "$0")/.."

sf=bin/splicefleet
dir=${DEMO_DIR:-demo}
module=kmod/testdata/livepatch-cmdline/livepatch_cmdline.ko
rm -rf "$dir" && mkdir -p "$dir"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $sf version
step $sf signing-key generate --uid "Alice Release <alice@example.com>" --out "$dir/alice"
step $sf signing-key generate --uid "Bob Security <bob@example.com>" --out "$dir/bob"
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
echo; echo "# a local fleet: three agents on loopback, each with its own SIMULATED kernel"
$sf gossip-key generate > "$dir/gossip.keys" && chmod 600 "$dir/gossip.keys"
pids=()
mkdir -p "$dir/fleet"
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
for i in 1 2 3; do
	join=""
	[ "$i" -gt 1 ] && join="--join 127.0.0.1:17941"
	$sf agent --node-name "demo-$i" --bind "127.0.0.1:1794$i" --http "127.0.0.1:1795$i" $join \
		--gossip-key-file "$dir/gossip.keys" --keyring "$dir/trusted.asc" --threshold 2 \
		--state-dir "$dir/fleet/demo-$i" --kernel "sim:$dir/fleet/demo-$i/kernel" \
		--control-socket "$dir/fleet/demo-$i.sock" --tag "ring=$([ "$i" = 1 ] && echo canary || echo main)" \
		--log-level warn 2>"$dir/fleet/demo-$i.log" &
	pids+=($!)
done
for _ in $(seq 50); do
	[ "$($sf members --control-socket "$dir/fleet/demo-3.sock" 2>/dev/null | grep -c ' alive')" = 3 ] && break
	sleep 0.2
done
step $sf members --control-socket "$dir/fleet/demo-3.sock"
step $sf publish --control-socket "$dir/fleet/demo-1.sock" "$dir/cmdline.splice"
for _ in $(seq 50); do
	[ "$($sf fleet status --timeout 500ms --control-socket "$dir/fleet/demo-3.sock" | grep -c 'cmdline-demo@1')" = 3 ] && break
	sleep 0.2
done
step $sf fleet status --control-socket "$dir/fleet/demo-3.sock"
echo; echo "# the tampered copy is refused at the door:"
step $sf publish --control-socket "$dir/fleet/demo-2.sock" "$dir/tampered.splice" || true
echo; echo "demo files are in $dir/"
