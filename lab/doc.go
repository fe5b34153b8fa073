// Package lab boots real Debian Linux kernels under QEMU with the real
// splicefleet binary inside, for end-to-end tests and for trying the
// product on a kernel that is not the host's.
//
// The lab has three layers, each usable on its own:
//
//   - Fetch resolves the current Debian cloud kernel at run time (from the
//     linux-image-cloud-amd64 and linux-headers-cloud-amd64 metapackages,
//     because the ABI number changes with every security update and the
//     mirror stops serving old ones), downloads the image, header and kbuild
//     packages with `apt-get download`, and unpacks them with `dpkg -x` into
//     a cache folder. Nothing on the host system changes except, as root,
//     installing QEMU and busybox-static when they are missing. The cache
//     is keyed by what was resolved, written under an flock, and marked
//     ready last, so an interrupted fetch is redone and a second run does
//     not download anything. FetchOptions.ABI pins an older kernel instead
//     (e.g. 6.1.0-53, which a corpus is measured against): its image and
//     headers at the version the archive serves for them, kbuild at its
//     candidate version (the headers accept any version from theirs).
//   - FetchSource downloads Debian's linux-source-X.Y package at exactly
//     the fetched kernel's package version, unpacks it with `dpkg -x` and
//     extracts its tarball into the cache, once (same lock, ready stamp
//     written last), for building livepatches from source (package ksrc).
//     FetchSourceVersion does the same for any version of the series,
//     FetchChangelog reads the package's Debian changelog, and
//     FetchDebugInfo unpacks the kernel's -dbg package (System.map, and
//     vmlinux and the modules unstripped, with their DWARF debug info), for
//     the corpus (cmd/corpus) and for create --patch, which places the
//     kernel's static symbols by the source files their tables name.
//   - WriteInitramfs writes a newc cpio archive (gzip, fixed mtimes, so the
//     same inputs give the same bytes) with busybox as the userland, an
//     /init shell script, /dev/console, the static splicefleet binary
//     (BuildSplicefleet), kernel modules taken from the fetched kernel, and
//     whatever files a scenario adds. /init mounts the pseudo file systems,
//     loads the modules in order, configures eth0 when asked, runs the
//     scenario's /lab/run.sh, prints "@@LAB-EXIT <code>" and powers off.
//   - Boot runs one guest with `qemu-system-x86_64 -accel tcg` (KVM on this
//     machine kind only runs PVM guests, so the lab never uses it), streams
//     its serial console to a writer, parses the "@@LAB <key> <value>"
//     lines a script prints into Result.Marks, and kills the QEMU process
//     group when the guest overruns its timeout or the context ends: no
//     QEMU process outlives Boot. BootAll runs several guests in parallel
//     on one private multicast network segment.
//
// The lab runs programs (apt-get, dpkg, go, qemu), which the lint rules
// allow only here, in cmd and in tests. Its tests need root on a Debian 12
// machine the first time (to install QEMU and busybox-static); they fail,
// never skip, when a tool is missing, saying what to install.
package lab
