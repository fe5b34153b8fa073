package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/internal/atomicfile"
	"github.com/splicefleet/splicefleet/signing"
)

// newSigningKeyCmd is `signing-key`: the publishers' OpenPGP keys, which
// sign bundles, plans and operator commands. (The gossip encryption key
// is gossip-key; the host keys that sign reports are hosts key.)
func newSigningKeyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "signing-key",
		Short: "Publishers' OpenPGP signing keys (bundles, plans, operator commands)",
		Long: `A signing key is a publisher's or an operator's OpenPGP key: it signs
bundles, rollout plans and operator commands, and hosts trust it through
their keyring. It is not the gossip encryption key of the cluster
(splicefleet gossip-key).`,
		Example: `  splicefleet signing-key generate --uid "Kernel Release <release@example.com>" --out release`,
	}
	var uid, out, passFile string
	var force bool
	gen := &cobra.Command{
		Use:   "generate --uid \"NAME <EMAIL>\" --out PREFIX",
		Short: "Generate an Ed25519 OpenPGP signing key (readable by GnuPG 2.2)",
		Long: `Generate an Ed25519 signing key and write PREFIX.sec.asc (mode 0600) and
PREFIX.pub.asc. The secret key is protected when a passphrase is given with
--passphrase-file or the SPLICEFLEET_PASSPHRASE environment variable.
Distribute PREFIX.pub.asc to hosts as part of their trusted keyring.`,
		Example: `  splicefleet signing-key generate --uid "Kernel Release <release@example.com>" --out release
  splicefleet signing-key generate --uid "Ops <ops@example.com>" --out ops --passphrase-file ops.pass`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out PREFIX is required")
			}
			secPath, pubPath := out+".sec.asc", out+".pub.asc"
			if !force {
				for _, p := range []string{secPath, pubPath} {
					if _, err := os.Stat(p); err == nil {
						return fmt.Errorf("%s exists; refusing to overwrite a key (use --force)", p)
					}
				}
			}
			pass, err := passphrase(e, passFile)
			if err != nil {
				return err
			}
			s, err := signing.GenerateSigner(uid, e.now())
			if err != nil {
				return err
			}
			sec, err := s.ArmoredSecret(pass)
			if err != nil {
				return err
			}
			pub, err := s.Public().Armored()
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(secPath, sec, 0o600); err != nil {
				return err
			}
			if err := atomicfile.WriteFile(pubPath, pub, 0o644); err != nil {
				return err
			}
			protected := "not protected by a passphrase"
			if len(pass) > 0 {
				protected = "protected by a passphrase"
			}
			fmt.Fprintf(e.stdout, "generated %s\n  secret key %s (%s)\n  public key %s\n", s.Public(), secPath, protected, pubPath)
			return nil
		},
	}
	gen.Flags().StringVar(&uid, "uid", "", `user id, "Name <email>"`)
	gen.Flags().StringVarP(&out, "out", "o", "", "path prefix for PREFIX.sec.asc and PREFIX.pub.asc")
	gen.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the passphrase that protects the secret key")
	gen.Flags().BoolVar(&force, "force", false, "overwrite existing key files")
	_ = gen.MarkFlagRequired("uid")
	cmd.AddCommand(gen)
	return cmd
}
