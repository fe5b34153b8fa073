package kmod

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Livepatches lists sys/kernel/livepatch: each patch's enabled and
// transition flags, its replace flag and stack order where the kernel
// shows them, and its objects (the subfolders; "vmlinux" for the kernel
// itself). Patches are ordered by stack order when the kernel shows it,
// else by name. A patch that disappears while it is read (its disable
// completed) is left out. Without livepatch support the error wraps
// [ErrNoLivepatch].
func (k FS) Livepatches() ([]Livepatch, error) {
	dir := k.livepatchDir()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoLivepatch)
	}
	if err != nil {
		return nil, err
	}
	var out []Livepatch
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p, err := k.livepatch(e.Name())
		if err != nil {
			if !exists(k.livepatchDir(e.Name())) {
				continue // freed while we read it
			}
			return nil, err
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Livepatch) int {
		return cmp.Or(cmp.Compare(a.StackOrder, b.StackOrder), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// livepatch reads one patch folder. enabled and transition are required;
// replace and stack_order are optional (newer kernels).
func (k FS) livepatch(name string) (Livepatch, error) {
	dir := k.livepatchDir(name)
	p := Livepatch{Name: name}
	var err error
	if p.Enabled, err = readBool(filepath.Join(dir, "enabled")); err != nil {
		return Livepatch{}, err
	}
	if p.Transition, err = readBool(filepath.Join(dir, "transition")); err != nil {
		return Livepatch{}, err
	}
	if p.Replace, err = k.replaceFlag(name); err != nil {
		return Livepatch{}, err
	}
	p.StackOrder, err = readInt(filepath.Join(dir, "stack_order"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Livepatch{}, err
	}
	if p.Objects, err = livepatchObjects(dir); err != nil {
		return Livepatch{}, err
	}
	return p, nil
}

// replaceFlag reads a patch's replace file; nil when the kernel has none.
func (k FS) replaceFlag(name string) (*bool, error) {
	r, err := readBool(k.livepatchDir(name, "replace"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// livepatchObjects reads the object subfolders of a patch folder. An
// object's patched file (Linux 5.x and later) says whether the object is
// loaded and patched; without it the object counts as not patched.
func livepatchObjects(dir string) ([]LivepatchObject, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var objs []LivepatchObject
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		o := LivepatchObject{Name: e.Name()}
		o.Patched, err = readBool(filepath.Join(dir, e.Name(), "patched"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}
