package splice

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOnlyMoveWritesState: no function but Host.move assigns a patch's
// State (the contract the journal's doc states), read from the source.
func TestOnlyMoveWritesState(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			checked++
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				as, ok := n.(*ast.AssignStmt)
				if !ok {
					return true
				}
				for _, lhs := range as.Lhs {
					if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == "State" && fn.Name.Name != "move" {
						if id, ok := sel.X.(*ast.Ident); ok && id.Name == "p" {
							t.Errorf("%s: %s assigns p.State; only Host.move may", fset.Position(as.Pos()), fn.Name.Name)
						}
					}
				}
				return true
			})
		}
	}
	if checked < 20 {
		t.Fatalf("read only %d functions", checked)
	}
}

// TestMoveChecksItsEdge: each edge refuses what it is not for.
func TestMoveChecksItsEdge(t *testing.T) {
	h := &Host{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: HostConfig{Now: time.Now}}
	p := &Patch{ID: "x", Version: 2, State: StateApplying}
	if err := h.move(p, StateReplaced, "", edgeRestorePrior); err == nil {
		t.Error("restore without a prior state was taken")
	}
	p.Prior = &Prior{State: StateReplaced, Reason: "replaced by y"}
	if err := h.move(p, StateReverted, "", edgeRestorePrior); err == nil {
		t.Error("restore to a state other than the prior one was taken")
	}
	if err := h.move(p, StateApplied, "", edgeGuard); err == nil {
		t.Error("the guard moved a patch to applied")
	}
	if err := h.move(p, StateReverted, "", edgeLifecycle); err == nil {
		t.Error("applying went straight to reverted")
	}
	if p.State != StateApplying {
		t.Fatalf("a refused move changed the state to %s", p.State)
	}
	if err := h.move(p, StateReplaced, "replaced by y", edgeRestorePrior); err != nil || p.State != StateReplaced || p.Prior != nil {
		t.Fatalf("restore: %v, state %s, prior %v", err, p.State, p.Prior)
	}
}
