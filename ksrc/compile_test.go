package ksrc

import (
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/splicefleet/splicefleet/internal/testutil"
)

// TestOverlayRelatives: a changed header that includes a neighbour by a
// quoted relative name (fs/smb/server/mgmt/user_session.h's
// "../ntlmssp.h") finds it beside its copy on the after side: the
// neighbour is copied, unchanged, and so are the neighbours it includes
// the same way; a name found on the include path, or nowhere in the
// tree, is not.
func TestOverlayRelatives(t *testing.T) {
	src := testutil.TempTree(t, map[string]string{
		"fs/x/mgmt/session.h": "old\n",
		"fs/x/ntlmssp.h":      "#include \"sub/auth.h\"\nint ntlm;\n",
		"fs/x/sub/auth.h":     "int auth;\n",
		"fs/x/unrelated.h":    "int other;\n",
		"include/linux/c.h":   "int c;\n",
	})
	tree := &Tree{Source: src}
	overlay := map[string][]byte{
		"fs/x/mgmt/session.h": []byte("#include <linux/c.h>\n#include \"../ntlmssp.h\"\n#include \"missing.h\"\nint session_changed;\n"),
	}
	if err := tree.overlayRelatives(overlay); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"fs/x/mgmt/session.h", "fs/x/ntlmssp.h", "fs/x/sub/auth.h"}, slices.Sorted(maps.Keys(overlay))); d != "" {
		t.Errorf("overlay (-want +got):\n%s", d)
	}
	if got := string(overlay["fs/x/ntlmssp.h"]); got != "#include \"sub/auth.h\"\nint ntlm;\n" {
		t.Errorf("the neighbour's copy reads %q, want the original", got)
	}
}
