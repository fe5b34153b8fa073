package agent

// The gossip event dispatcher: announcements, member changes and the
// rollout events, each handed to the part of the agent that acts on it.

import (
	"context"
	"fmt"

	"github.com/splicefleet/splicefleet/distrib"
	"github.com/splicefleet/splicefleet/gossip"
	"github.com/splicefleet/splicefleet/rollout"
)

// handleEvent dispatches one gossip event.
func (a *Agent) handleEvent(ctx context.Context, ev gossip.Event) {
	switch ev.Kind {
	case gossip.Announce:
		if ann := ev.Announcement; ann != nil {
			// The expiry is a hint from the announcer; skipping the fetch
			// is all it decides. The signed manifest rules on the bundle.
			if !ann.Expires.IsZero() && !a.now().Before(ann.Expires) {
				a.log.Debug("skipped an announcement of an expired bundle", "id", ann.ID, "digest", ann.ManifestDigest[:12], "expires", ann.Expires)
				return
			}
			a.fetchAsync(ctx, *ann, false)
		}
	case gossip.MemberJoin, gossip.MemberLeave, gossip.MemberFailed, gossip.MemberUpdate:
		a.ro.Kick()
		if ev.Member != nil && (ev.Kind == gossip.MemberJoin || ev.Kind == gossip.MemberUpdate) {
			a.pullUnknownRollouts(ctx, *ev.Member)
		}
	case gossip.UserEvent:
		switch ev.Name {
		case rollout.ReportEvent:
			// Refused and counted inside unless it verifies.
			_ = a.ro.Report(ev.Payload)
		case rollout.FailureEvent:
			// The unsigned failure report of earlier releases: no host's
			// word counts unless it signed it.
			a.metricRefused("report", fmt.Errorf("%w: %w (an agent of an earlier release, or a forgery)", ErrReportRefused, rollout.ErrUnsignedReport))
		case rollout.DocEvent:
			d, err := rollout.DecodeDocAnnouncement(ev.Payload)
			if err == nil && !distrib.ValidHostPort(d.Origin) {
				err = fmt.Errorf("%w: origin %q is not host:port", rollout.ErrMalformedEvent, d.Origin)
			}
			if err != nil {
				a.log.Warn("bad document announcement", "err", err)
				a.metricBadEvent(ev.Name)
				return
			}
			a.fetchDocAsync(ctx, d.Kind, d.Digest, d.Origin, false)
		}
	}
}
