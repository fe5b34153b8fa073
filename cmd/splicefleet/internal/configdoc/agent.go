package configdoc

import (
	"fmt"
	"os"
	"strings"

	"github.com/splicefleet/splicefleet/agent"
)

// hostnamePlaceholder stands for the node name's default, the hostname of
// the machine the agent runs on.
const hostnamePlaceholder = "(the hostname)"

// Agent describes agent.Config, whose source is src (agent/config.go),
// with the defaults of agent.DefaultConfig.
func Agent(src []byte) ([]Key, error) {
	def := agent.DefaultConfig()
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("hostname: %w", err)
	}
	if def.NodeName != host {
		return nil, fmt.Errorf("the default node_name is %q, not the hostname %q: update the placeholder in configdoc", def.NodeName, host)
	}
	return Describe(src, "Config", def, Options{
		Placeholders: map[string]string{"node_name": hostnamePlaceholder},
		Problems:     problems(def.Validate()),
	})
}

// problems splits a validation error of agent.Config into its problems.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(strings.TrimPrefix(err.Error(), "configuration: "), "; ")
}
