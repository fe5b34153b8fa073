package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// The public corpus.
const (
	defaultABI  = "6.1.0-53"
	defaultTo   = "6.1.190-1"
	defaultSeed = 1
)

type config struct {
	abi, version, to string
	patches          string
	sample           int
	units            []string
	seed             uint64
	results          string
	export           string // write the chosen units' patches here instead of running them
	// maxHeaderUnits is create's --max-header-units; 0 leaves create's
	// default.
	maxHeaderUnits int
}

func configFrom(getenv func(string) string) (config, error) {
	c := config{abi: defaultABI, to: defaultTo, seed: defaultSeed}
	if v := getenv("CORPUS_ABI"); v != "" {
		c.abi = v
	}
	if v := getenv("CORPUS_TO"); v != "" {
		c.to = v
	}
	c.version = getenv("CORPUS_VERSION")
	c.patches = getenv("CORPUS_PATCHES")
	c.results = getenv("CORPUS_RESULTS")
	c.export = getenv("CORPUS_EXPORT")
	if v := getenv("CORPUS_SAMPLE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, fmt.Errorf("%w: CORPUS_SAMPLE=%q is not a count", errUsage, v)
		}
		c.sample = n
	}
	if v := getenv("CORPUS_MAX_HEADER_UNITS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%w: CORPUS_MAX_HEADER_UNITS=%q is not a count of at least 1", errUsage, v)
		}
		c.maxHeaderUnits = n
	}
	if v := getenv("CORPUS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return c, fmt.Errorf("%w: CORPUS_SEED=%q is not a number", errUsage, v)
		}
		c.seed = n
	}
	if v := getenv("CORPUS_UNITS"); v != "" {
		if c.sample != 0 {
			return c, fmt.Errorf("%w: CORPUS_UNITS and CORPUS_SAMPLE both choose units; give one", errUsage)
		}
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				c.units = append(c.units, id)
			}
		}
	}
	if c.patches != "" && getenv("CORPUS_ABI") == "" {
		return c, fmt.Errorf("%w: CORPUS_PATCHES needs CORPUS_ABI (the kernel the patches are for, e.g. 6.1.0-53)", errUsage)
	}
	if strings.ContainsAny(c.abi+c.version+c.to, "/ \t") {
		return c, fmt.Errorf("%w: CORPUS_ABI, CORPUS_VERSION and CORPUS_TO are names, not paths", errUsage)
	}
	if c.export != "" {
		abs, err := filepath.Abs(c.export)
		if err != nil {
			return c, err
		}
		c.export = abs
	}
	if c.patches != "" {
		abs, err := filepath.Abs(c.patches)
		if err != nil {
			return c, err
		}
		c.patches = abs
	}
	return c, nil
}
