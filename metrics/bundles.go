package metrics

// DropReason says why the agent dropped a bundle from its store.
type DropReason string

// Reasons a bundle is dropped.
const (
	DropRetention DropReason = "retention" // no live rollout needed it for the retention
	DropForget    DropReason = "forget"    // splicefleet forget, local or by signed command
)

// BundleDropped counts a bundle dropped from the store for distribution.
func (m *Metrics) BundleDropped(reason DropReason) {
	if reason != DropRetention && reason != DropForget {
		m.log.Error("bundle dropped for an unknown reason is not counted", "reason", reason)
		return
	}
	m.bundlesDropped.WithLabelValues(string(reason)).Inc()
}
