package gossip

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/serf/serf"
)

// ErrNotEncrypted reports a keyring operation on a node started without keys.
var ErrNotEncrypted = errors.New("gossip is not encrypted")

// GenerateKey returns a new random 32-byte gossip key, base64 encoded as
// the keyring operations take it.
func GenerateKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// DecodeKey decodes a base64 gossip key and checks its length.
func DecodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("decode key: %d bytes, want 16, 24 or 32", len(k))
}

// Keyring is what the cluster's members hold: for each base64 key, how
// many members hold it (Installed), and how many encrypt with it
// (Primary). After a completed rotation one key is both everywhere.
type Keyring struct {
	Installed map[string]int `json:"installed"`
	Primary   map[string]int `json:"primary"`
}

// PrimaryKey is the key most members encrypt with ("" when none
// answered); on a tie, the smaller key, so the answer is stable.
func (k Keyring) PrimaryKey() string {
	best, n := "", 0
	for key, c := range k.Primary {
		if c > n || (c == n && key < best) {
			best, n = key, c
		}
	}
	return best
}

// ListKeys asks every member for its keys and returns, for each base64
// key, how many members hold it and how many use it as their primary.
// Keyring operations are serf queries that wait for an answer from every
// member until Config.QueryTimeout; one that a member missed returns an
// error naming how many answered, and is safe to repeat. If ctx ends
// first, the operation carries on in the background.
func (n *Node) ListKeys(ctx context.Context) (Keyring, error) {
	resp, err := n.keyOp(ctx, "list keys", func(km *serf.KeyManager) (*serf.KeyResponse, error) { return km.ListKeys() })
	if err != nil {
		return Keyring{}, err
	}
	return Keyring{Installed: maps.Clone(resp.Keys), Primary: maps.Clone(resp.PrimaryKeys)}, nil
}

// InstallKey adds key (base64) to every member's keyring without using it.
func (n *Node) InstallKey(ctx context.Context, key string) error {
	return n.keyChange(ctx, "install key", key, (*serf.KeyManager).InstallKey)
}

// UseKey makes key, already installed, the primary key on every member.
func (n *Node) UseKey(ctx context.Context, key string) error {
	return n.keyChange(ctx, "use key", key, (*serf.KeyManager).UseKey)
}

// RemoveKey removes key from every member's keyring; serf refuses to
// remove the primary key.
func (n *Node) RemoveKey(ctx context.Context, key string) error {
	return n.keyChange(ctx, "remove key", key, (*serf.KeyManager).RemoveKey)
}

func (n *Node) keyChange(ctx context.Context, op, key string, f func(*serf.KeyManager, string) (*serf.KeyResponse, error)) error {
	if _, err := DecodeKey(key); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_, err := n.keyOp(ctx, op, func(km *serf.KeyManager) (*serf.KeyResponse, error) { return f(km, key) })
	return err
}

func (n *Node) keyOp(ctx context.Context, op string, f func(*serf.KeyManager) (*serf.KeyResponse, error)) (*serf.KeyResponse, error) {
	if !n.serf.EncryptionEnabled() {
		return nil, fmt.Errorf("%s: %w", op, ErrNotEncrypted)
	}
	type result struct {
		resp *serf.KeyResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := f(n.serf.KeyManager())
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w%s", op, r.err, keyMessages(r.resp))
		}
		return r.resp, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

// keyMessages formats the per-member error messages of a key response.
func keyMessages(resp *serf.KeyResponse) string {
	if resp == nil || len(resp.Messages) == 0 {
		return ""
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(resp.Messages)) {
		fmt.Fprintf(&b, "; %s: %s", name, resp.Messages[name])
	}
	return b.String()
}

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }
