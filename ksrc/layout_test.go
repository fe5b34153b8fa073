package ksrc

import (
	"slices"
	"testing"
)

// The change Debian's 6.1.190-1 makes to include/net/netfilter/nf_tables.h
// adds a member to struct nft_table (and a comment line about it) and
// drops a const from a prototype: the struct's layout changes, the
// prototype is no struct.
func TestLayoutChanges(t *testing.T) {
	before := []byte(`/**
 *	@flowtables: flow tables in the table
 */
struct nft_table {
	struct list_head		flowtables;
	u64				hgenerator;
};

struct nft_object *nft_obj_lookup(const struct net *net,
				  const struct nft_table *table,
				  u8 genmask);
`)
	fix := mustParse(t, `--- a/include/net/netfilter/nf_tables.h
+++ b/include/net/netfilter/nf_tables.h
@@ -1,7 +1,9 @@
 /**
  *	@flowtables: flow tables in the table
+ *	@objname_ht: hashtable for objects lookup by name
  */
 struct nft_table {
 	struct list_head		flowtables;
+	struct rhltable			objname_ht;
 	u64				hgenerator;
 };
@@ -8,4 +10,4 @@
 
 struct nft_object *nft_obj_lookup(const struct net *net,
-				  const struct nft_table *table,
+				  struct nft_table *table,
 				  u8 genmask);
`)
	after, err := Apply(before, fix.File("include/net/netfilter/nf_tables.h"))
	if err != nil {
		t.Fatal(err)
	}
	if got := layoutChanges(before, after, fix.File("include/net/netfilter/nf_tables.h")); !slices.Equal(got, []string{"struct nft_table"}) {
		t.Errorf("layoutChanges = %q, want struct nft_table", got)
	}

	// A comment inside a struct changes no layout.
	comment := mustParse(t, `--- a/include/net/netfilter/nf_tables.h
+++ b/include/net/netfilter/nf_tables.h
@@ -4,4 +4,5 @@
 struct nft_table {
+	/* the table's flow tables */
 	struct list_head		flowtables;
 	u64				hgenerator;
 };
`)
	after, err = Apply(before, comment.File("include/net/netfilter/nf_tables.h"))
	if err != nil {
		t.Fatal(err)
	}
	if got := layoutChanges(before, after, comment.File("include/net/netfilter/nf_tables.h")); len(got) != 0 {
		t.Errorf("layoutChanges of a comment = %q, want none", got)
	}
}
