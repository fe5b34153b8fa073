package agent

// The health probe that watches a host after an apply.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/splicefleet/splicefleet/kmod"
)

// expectedTaint is what loading a livepatch module may add to the taint
// flags: livepatch (K), out-of-tree (O) and unsigned module (E).
const expectedTaint = kmod.TaintLivepatch | 1<<12 | 1<<13

// healthProbe watches a host after an apply: the patch's transition
// completed and it stays enabled, no taint beyond what livepatch modules
// cause, no Oops, BUG or WARN in the kernel log, the agent itself still
// healthy (it still reaches the cluster it reached before the apply), and
// the operator's health command (when configured) succeeds.
type healthProbe struct {
	a      *Agent
	module string
	taint  kmod.Taint // before the apply
	cursor uint64     // kernel log position before the apply
	peers  int        // other members alive before the apply
}

// minPeersForContact is how many other members must have been alive
// before an apply for the loss of all of them to count against the patch:
// with fewer, one peer restarting would look like a broken host.
const minPeersForContact = 2

// alivePeers counts the other members this agent sees alive, and those it
// sees failed (unreachable without having left).
func (a *Agent) alivePeers() (alive, failed int) {
	if a.node == nil {
		return 0, 0 // not a gossip member (tests of the probe alone)
	}
	for _, m := range a.node.Members() {
		switch {
		case m.Name == a.cfg.NodeName:
		case m.Status == "alive":
			alive++
		case m.Status == "failed":
			failed++
		}
	}
	return alive, failed
}

// newHealthProbe records the baseline before an apply.
func (a *Agent) newHealthProbe(module string) (*healthProbe, error) {
	k := a.kernel.Backend()
	t, err := k.Taint()
	if err != nil {
		return nil, fmt.Errorf("read taint: %w", err)
	}
	_, cursor, err := k.Log(0)
	if err != nil {
		return nil, fmt.Errorf("read kernel log: %w", err)
	}
	peers, _ := a.alivePeers()
	return &healthProbe{a: a, module: module, taint: t, cursor: cursor, peers: peers}, nil
}

// errUnhealthy wraps every health check failure.
var errUnhealthy = errors.New("health check")

// errCheckInterrupted means a check was cut short because its context
// ended (the health window closed, the apply failed, or the agent stops)
// while the health command ran: no verdict, never a failure.
var errCheckInterrupted = errors.New("health check interrupted")

// check runs every check once.
func (p *healthProbe) check(ctx context.Context, applied bool) error {
	k := p.a.kernel.Backend()
	// The taint is read before the log: an Oops taints the kernel after
	// its lines are logged, so whatever tainted the kernel by the time of
	// this read is in the log read next, and the failure names the Oops
	// rather than only the taint it left.
	t, err := k.Taint()
	if err != nil {
		return fmt.Errorf("%w: read taint: %w", errUnhealthy, err)
	}
	recs, next, err := k.Log(p.cursor)
	if err != nil {
		return fmt.Errorf("%w: read kernel log: %w", errUnhealthy, err)
	}
	p.cursor = next
	for _, r := range recs {
		if prob := r.Problem(); prob != "" && prob != "livepatch" {
			return fmt.Errorf("%w: %s in the kernel log: %q", errUnhealthy, prob, r.Message)
		}
	}
	if gained := t &^ p.taint &^ expectedTaint; gained != 0 {
		return fmt.Errorf("%w: the kernel gained taint %s", errUnhealthy, strings.Join(gained.Names(), ","))
	}
	if applied {
		lps, err := k.Livepatches()
		if err != nil {
			return fmt.Errorf("%w: read livepatches: %w", errUnhealthy, err)
		}
		found := false
		for _, lp := range lps {
			if lp.Name == p.module {
				found = true
				if !lp.Enabled || lp.Transition {
					return fmt.Errorf("%w: livepatch %s is not settled (enabled %t, in transition %t)", errUnhealthy, lp.Name, lp.Enabled, lp.Transition)
				}
			}
		}
		if !found {
			return fmt.Errorf("%w: livepatch %s is no longer in /sys/kernel/livepatch", errUnhealthy, p.module)
		}
	}
	// A patch that breaks the host's networking shows here first: every
	// peer reachable before the apply is now unreachable (failed, not
	// left).
	if p.peers >= minPeersForContact {
		if alive, failed := p.a.alivePeers(); alive == 0 && failed > 0 {
			return fmt.Errorf("%w: the agent lost contact with the cluster: none of the %d members alive before the apply answers (%d unreachable)", errUnhealthy, p.peers, failed)
		}
	}
	if p.a.kernelHealth != nil {
		if err := p.a.kernelHealth(); err != nil {
			return fmt.Errorf("%w: %w", errUnhealthy, err)
		}
	}
	if len(p.a.cfg.HealthCommand) > 0 && p.a.runHealth != nil {
		cctx, cancel := context.WithTimeout(ctx, p.a.cfg.HealthTimeout)
		defer cancel()
		if err := p.a.runHealth(cctx, p.a.cfg.HealthCommand); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w: health command %s: %w", errCheckInterrupted, p.a.cfg.HealthCommand[0], err)
			}
			return fmt.Errorf("%w: %s; %s: %w", errUnhealthy, healthCommandClass(cctx, err), p.a.cfg.HealthCommand[0], err)
		}
	}
	return nil
}

// healthCommandFailed starts the class of a failed health command in a
// failure reason: "health command failed: exit status 3". What follows
// the class, after a semicolon, is the detail (the command and what it
// printed); publicReason keeps only the class.
const healthCommandFailed = "health command failed: "

// healthCommandClass names how the health command failed without what it
// printed: its exit status, a signal, a timeout, or that it did not run.
// The class never holds a semicolon (see publicReason).
func healthCommandClass(ctx context.Context, err error) string {
	var exit interface{ ExitCode() int }
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return healthCommandFailed + "timed out"
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return healthCommandFailed + "exit status " + strconv.Itoa(exit.ExitCode())
	case errors.As(err, &exit):
		return healthCommandFailed + "killed by a signal"
	}
	return healthCommandFailed + "did not run"
}

// watch checks the host every interval until ctx ends; it returns the
// first failure, or nil when ctx ended (the window is over), also when
// ctx ended while a check ran.
func (p *healthProbe) watch(ctx context.Context, window time.Duration, applied func() bool) error {
	every := min(time.Second, max(window/5, 10*time.Millisecond))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.check(ctx, applied()); err != nil {
				if errors.Is(err, errCheckInterrupted) {
					return nil
				}
				return err
			}
		}
	}
}
