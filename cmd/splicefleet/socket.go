package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/agent"
)

// defaultAgentConfig is the agent's configuration as the package installs
// it; client commands read control_socket from it.
const defaultAgentConfig = "/etc/splicefleet/agent.yaml"

// socketEnv names the control socket for every client command.
const socketEnv = "SPLICEFLEET_CONTROL_SOCKET"

// configEnv names the agent's configuration for every command that reads
// it, when --config is not given: the host verbs read its state_dir,
// kernel and trust policy, the client commands its control_socket. With
// several agents on one machine it picks one for a whole shell session.
const configEnv = "SPLICEFLEET_CONFIG"

// socketFlag adds --control-socket and --config to a command that talks
// to the agent, and sets *p before the command runs to the socket they
// find (see findSocket).
func socketFlag(e *env, cmd *cobra.Command, p *string) {
	var config string
	cmd.Flags().StringVar(p, "control-socket", "", "the agent's control socket (default: $"+socketEnv+", else control_socket of the agent's configuration, else "+agent.DefaultConfig().ControlSocket+")")
	cmd.Flags().StringVar(&config, "config", "", "the agent's configuration, read for its control_socket (default $"+configEnv+", else "+defaultAgentConfig+" when it exists)")
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		given := c.Flags().Changed("control-socket")
		s, err := findSocket(e, given, *p, config, defaultAgentConfig)
		if err != nil {
			return err
		}
		*p = s
		if e.verbose {
			from := "the configuration or the default"
			switch {
			case given:
				from = "--control-socket"
			case e.getenv(socketEnv) != "":
				from = "$" + socketEnv
			}
			slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: e.logLevel(slog.LevelWarn)})).Debug("control socket", "path", s, "from", from)
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}

// findSocket is where a client command finds the agent, the first of:
// --control-socket; $SPLICEFLEET_CONTROL_SOCKET; control_socket of the
// configuration named by --config or $SPLICEFLEET_CONFIG (which must be
// readable), else of defaultConfig when it exists; the agent's default
// socket.
func findSocket(e *env, given bool, flag, config, defaultConfig string) (string, error) {
	if given {
		if flag == "" {
			return "", errors.New("--control-socket: give a path")
		}
		return flag, nil
	}
	if s := e.getenv(socketEnv); s != "" {
		return s, nil
	}
	path, explicit := config, config != ""
	if !explicit {
		if env := e.getenv(configEnv); env != "" {
			path, explicit = env, true
		} else {
			path = defaultConfig
		}
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return agent.DefaultConfig().ControlSocket, nil
	}
	if err != nil {
		return "", fmt.Errorf("find the agent's control socket: %w (or give --control-socket)", err)
	}
	defer f.Close()
	cfg, err := agent.DecodeConfig(f)
	if err != nil {
		return "", fmt.Errorf("find the agent's control socket: %s: %w (or give --control-socket)", path, err)
	}
	if cfg.ControlSocket == "" {
		return agent.DefaultConfig().ControlSocket, nil
	}
	return cfg.ControlSocket, nil
}
