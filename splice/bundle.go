package splice

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Format version written by this package. Readers refuse another major.
const (
	FormatMajor = 1
	FormatMinor = 0
)

// Limits on each part of a bundle, checked before anything is allocated.
const (
	MaxManifestSize     = 64 << 10
	MaxModuleSize       = 64 << 20
	MaxSignatureSize    = 8 << 10
	MaxSignatures       = 32
	MaxOptionalSize     = 64 << 10
	MaxOptionalSections = 8
	// MaxBundleSize bounds a whole bundle file.
	MaxBundleSize = headerSize + MaxManifestSize + MaxModuleSize + MaxSignatures*MaxSignatureSize +
		MaxOptionalSections*MaxOptionalSize + (3+MaxSignatures+MaxOptionalSections)*sectionHeaderSize
)

var magic = [8]byte{0x89, 'S', 'P', 'L', 'I', 'C', 'E', '\n'}

const (
	headerSize        = 12
	sectionHeaderSize = 5

	kindEnd       = 0
	kindManifest  = 1
	kindModule    = 2
	kindSignature = 3
	kindOptional  = 0x80 // kinds from here up to 0xfe may be skipped
)

// Bundle is a decoded bundle container: raw, unverified parts. Use [Verify]
// to get a [Verified] bundle whose contents may be trusted.
type Bundle struct {
	Major, Minor uint16
	Manifest     []byte   // exactly as signed
	Module       []byte   // the livepatch kernel module
	Signatures   [][]byte // binary detached OpenPGP signatures over Manifest
}

// Decode reads one bundle from r, checking structure and limits only.
func Decode(r io.Reader) (*Bundle, error) {
	br := bufio.NewReader(r)
	var hdr [headerSize]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if bytes.HasPrefix(magic[:], hdr[:min(len(hdr), 8)]) && err == io.ErrUnexpectedEOF {
				return nil, reject(ErrTruncated, "file ends inside the header")
			}
			return nil, reject(ErrFormat, "not a splicefleet bundle (too short)")
		}
		return nil, fmt.Errorf("read bundle header: %w", err)
	}
	if !bytes.Equal(hdr[:8], magic[:]) {
		return nil, reject(ErrFormat, "not a splicefleet bundle (bad magic)")
	}
	b := &Bundle{Major: binary.BigEndian.Uint16(hdr[8:]), Minor: binary.BigEndian.Uint16(hdr[10:])}
	if b.Major != FormatMajor {
		return nil, reject(ErrVersion, "format %d.%d; this splicefleet reads %d.x", b.Major, b.Minor, FormatMajor)
	}
	optional := 0
	for idx := 0; ; idx++ {
		kind, body, err := readSection(br, idx)
		if err != nil {
			return nil, err
		}
		switch {
		case kind == kindEnd:
			if len(body) != 0 {
				return nil, reject(ErrFormat, "end section has %d bytes", len(body))
			}
			if b.Manifest == nil || b.Module == nil {
				return nil, reject(ErrFormat, "end before manifest and module")
			}
			if n, _ := br.Read(make([]byte, 1)); n != 0 {
				return nil, reject(ErrFormat, "data after the end section")
			}
			return b, nil
		case kind == kindManifest:
			if idx != 0 {
				return nil, reject(ErrFormat, "manifest must be the first section")
			}
			b.Manifest = body
		case kind == kindModule:
			if idx != 1 || b.Manifest == nil {
				return nil, reject(ErrFormat, "module must be the second section, after the manifest")
			}
			b.Module = body
		case kind == kindSignature:
			if b.Module == nil {
				return nil, reject(ErrFormat, "signature before the module")
			}
			if len(b.Signatures) == MaxSignatures {
				return nil, reject(ErrTooLarge, "more than %d signatures", MaxSignatures)
			}
			b.Signatures = append(b.Signatures, body)
		case kind >= kindOptional && kind != 0xff:
			if b.Module == nil {
				return nil, reject(ErrFormat, "optional section before the module")
			}
			if optional++; optional > MaxOptionalSections {
				return nil, reject(ErrTooLarge, "more than %d optional sections", MaxOptionalSections)
			}
		default:
			return nil, reject(ErrFormat, "unknown section kind %d (a newer format?)", kind)
		}
	}
}

func sectionLimit(kind byte) (int, string) {
	switch {
	case kind == kindEnd:
		return 0, "end"
	case kind == kindManifest:
		return MaxManifestSize, "manifest"
	case kind == kindModule:
		return MaxModuleSize, "module"
	case kind == kindSignature:
		return MaxSignatureSize, "signature"
	case kind >= kindOptional:
		return MaxOptionalSize, fmt.Sprintf("optional section %d", kind)
	}
	return 0, fmt.Sprintf("unknown section kind %d", kind)
}

func readSection(r io.Reader, idx int) (byte, []byte, error) {
	var h [sectionHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, reject(ErrTruncated, "file ends before section %d (no end marker)", idx+1)
		}
		return 0, nil, fmt.Errorf("read section %d: %w", idx+1, err)
	}
	kind, size := h[0], binary.BigEndian.Uint32(h[1:])
	limit, name := sectionLimit(kind)
	if int64(size) > int64(limit) {
		if limit == 0 {
			return 0, nil, reject(ErrFormat, "%s with %d bytes (a newer format?)", name, size)
		}
		return 0, nil, reject(ErrTooLarge, "%s is %d bytes, limit %d", name, size, limit)
	}
	if size == 0 {
		return kind, []byte{}, nil
	}
	body, err := readN(r, int(size))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, reject(ErrTruncated, "%s says %d bytes, file ends after %d", name, size, len(body))
		}
		return 0, nil, fmt.Errorf("read %s: %w", name, err)
	}
	return kind, body, nil
}

// readChunk is how much memory a section's claimed length may reserve
// before its bytes arrive.
const readChunk = 1 << 20

// readN reads exactly n bytes, growing the buffer only as data arrives, so
// a header that claims a large section costs little unless the bytes come.
func readN(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for len(buf) < n {
		step := min(n-len(buf), readChunk)
		buf = slices.Grow(buf, step)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+step])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Encode writes the bundle in the current format.
func (b *Bundle) Encode(w io.Writer) error {
	if len(b.Manifest) == 0 || len(b.Manifest) > MaxManifestSize {
		return fmt.Errorf("encode bundle: manifest of %d bytes (limit %d)", len(b.Manifest), MaxManifestSize)
	}
	if len(b.Module) == 0 || len(b.Module) > MaxModuleSize {
		return fmt.Errorf("encode bundle: module of %d bytes (limit %d)", len(b.Module), MaxModuleSize)
	}
	if len(b.Signatures) > MaxSignatures {
		return fmt.Errorf("encode bundle: %d signatures (limit %d)", len(b.Signatures), MaxSignatures)
	}
	bw := bufio.NewWriter(w)
	var hdr [headerSize]byte
	copy(hdr[:], magic[:])
	binary.BigEndian.PutUint16(hdr[8:], FormatMajor)
	binary.BigEndian.PutUint16(hdr[10:], FormatMinor)
	bw.Write(hdr[:])
	writeSection(bw, kindManifest, b.Manifest)
	writeSection(bw, kindModule, b.Module)
	for i, s := range b.Signatures {
		if len(s) == 0 || len(s) > MaxSignatureSize {
			return fmt.Errorf("encode bundle: signature %d of %d bytes (limit %d)", i+1, len(s), MaxSignatureSize)
		}
		writeSection(bw, kindSignature, s)
	}
	writeSection(bw, kindEnd, nil)
	return bw.Flush()
}

// Bytes returns the encoded bundle.
func (b *Bundle) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	n := headerSize + len(b.Manifest) + len(b.Module) + (3+len(b.Signatures))*sectionHeaderSize
	for _, s := range b.Signatures {
		n += len(s)
	}
	buf.Grow(n)
	if err := b.Encode(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeSection(w *bufio.Writer, kind byte, body []byte) {
	var h [sectionHeaderSize]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(body)))
	w.Write(h[:])
	w.Write(body)
}

// AddSignature appends a detached signature. A signature already present
// (byte for byte) is not added twice. The manifest is never changed.
func (b *Bundle) AddSignature(sig []byte) (added bool, err error) {
	if len(sig) == 0 || len(sig) > MaxSignatureSize {
		return false, reject(ErrTooLarge, "signature of %d bytes (limit %d)", len(sig), MaxSignatureSize)
	}
	for _, s := range b.Signatures {
		if bytes.Equal(s, sig) {
			return false, nil
		}
	}
	if len(b.Signatures) >= MaxSignatures {
		return false, reject(ErrTooLarge, "bundle already has %d signatures", MaxSignatures)
	}
	b.Signatures = append(b.Signatures, append([]byte(nil), sig...))
	return true, nil
}
