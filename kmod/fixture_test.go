package kmod

import "strconv"

// fixtureRoot is a procfs and sysfs tree shaped like a Debian 12 cloud
// kernel (6.1.0-56-cloud-amd64) with the livepatch_cmdline example patch
// loaded and enabled.
const fixtureRoot = "testdata/debian-6.1-cloud"

// itoa formats n in decimal.
func itoa(n int) string { return strconv.Itoa(n) }
