package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/splicefleet/splicefleet/signing"
	"github.com/splicefleet/splicefleet/splice"
)

func newSignCmd(e *env) *cobra.Command {
	var keyPath, sigPath, passFile string
	cmd := &cobra.Command{
		Use:   "sign (--key SECRET.asc | --signature SIG.asc) BUNDLE",
		Short: "Add a signature to a bundle, in place",
		Long: `Add a detached OpenPGP signature over the bundle's manifest, in place. The
manifest itself never changes, so signers may sign in any order.

With --key, splicefleet signs with a secret key (its passphrase from
--passphrase-file or SPLICEFLEET_PASSPHRASE). With --signature, it attaches
a signature made elsewhere, for example:

  splicefleet manifest fix.splice > fix.manifest
  gpg --armor --detach-sign -o fix.sig fix.manifest
  splicefleet sign --signature fix.sig fix.splice

Before signing, the module is checked against the digest the manifest pins.`,
		Example: `  splicefleet sign --key release.sec.asc fix.splice
  splicefleet sign --key security.sec.asc --passphrase-file security.pass fix.splice
  splicefleet sign --signature fix.sig fix.splice`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (keyPath == "") == (sigPath == "") {
				return errors.New("give exactly one of --key or --signature")
			}
			path := args[0]
			b, err := readBundle(path)
			if err != nil {
				return err
			}
			if err := b.CheckModule(); err != nil {
				return fmt.Errorf("%s: refusing to sign: %w", path, err)
			}
			var sigs [][]byte
			if keyPath != "" {
				pass, err := passphrase(e, passFile)
				if err != nil {
					return err
				}
				raw, err := readFile(keyPath, signing.MaxSecretKeySize)
				if err != nil {
					return err
				}
				s, err := signing.ReadSigner(raw, pass, e.now())
				if err != nil {
					return fmt.Errorf("%s: %w", keyPath, err)
				}
				sig, err := s.Sign(b.Manifest, e.now())
				if err != nil {
					return err
				}
				sigs = [][]byte{sig}
			} else {
				raw, err := readFile(sigPath, signing.MaxSignatures*signing.MaxSignatureSize*2)
				if err != nil {
					return err
				}
				sigs, err = signing.SplitSignatures(raw)
				if err != nil {
					return &refusal{fmt.Errorf("%s: %w", sigPath, err)}
				}
			}
			added := 0
			for _, sig := range sigs {
				ok, err := b.AddSignature(sig)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				if ok {
					added++
				}
			}
			if added > 0 {
				if err := writeBundle(path, b); err != nil {
					return err
				}
			}
			for _, sig := range sigs {
				info, _ := signing.Describe(sig)
				fmt.Fprintf(e.stdout, "signed %s: %s signature by %s (%s, %s)\n", path, info.Algorithm, info.Issuer, info.Hash, info.Created.Format("2006-01-02T15:04:05Z"))
			}
			if added < len(sigs) {
				fmt.Fprintf(e.stdout, "%d signature(s) were already present\n", len(sigs)-added)
			}
			fmt.Fprintf(e.stdout, "%s now has %d signature(s)\n", path, len(b.Signatures))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "secret key to sign with (armored or binary)")
	cmd.Flags().StringVar(&sigPath, "signature", "", "detached signature over the manifest to attach (armored or binary)")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the secret key's passphrase")
	return cmd
}

func newManifestCmd(e *env) *cobra.Command {
	var sigs bool
	cmd := &cobra.Command{
		Use:   "manifest [--signatures] BUNDLE",
		Short: "Print the manifest bytes exactly as signed, or the signatures",
		Long: `Print the bundle's manifest exactly as stored: these are the bytes every
signature covers. Sign them with another tool (gpg --detach-sign) and attach
the result with "splicefleet sign --signature".

With --signatures, print the bundle's signatures as one armored block, which
gpg checks against the manifest:

  splicefleet manifest fix.splice > fix.manifest
  splicefleet manifest --signatures fix.splice > fix.sig.asc
  gpg --verify fix.sig.asc fix.manifest`,
		Example: `  splicefleet manifest fix.splice > fix.manifest
  splicefleet manifest --signatures fix.splice > fix.sig.asc`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readBundle(args[0])
			if err != nil {
				return err
			}
			if !sigs {
				_, err = exactStdout(e).Write(b.Manifest)
				return err
			}
			if len(b.Signatures) == 0 {
				return fmt.Errorf("%s has no signatures", args[0])
			}
			armored, err := signing.Armor(bytes.Join(b.Signatures, nil))
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(armored)
			return err
		},
	}
	cmd.Flags().BoolVar(&sigs, "signatures", false, "print the signatures, armored, instead of the manifest")
	return cmd
}

// verifyBundle decodes and verifies a bundle file under a policy.
func verifyBundle(e *env, path string, p *signing.Policy) (*splice.Verified, error) {
	b, err := readBundle(path)
	if err != nil {
		return nil, err
	}
	v, err := splice.Verify(b, p, e.now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}
