package gossip

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ProtocolMin and ProtocolMax bound the protocol versions this build
// speaks. A node speaks Config.Protocol (default ProtocolMax) and decodes
// every version in the range; an announcement whose version lies outside
// it is ignored and counted, never guessed at. Nodes advertise their range
// in the TagProtocol tag and announce in the newest version every alive
// member decodes, so a fleet can run two builds side by side while it
// upgrades (see Config.Protocol).
//
// Version 1: the bundle's id, version, manifest digest, size and origin.
// Version 2: version 1 and the bundle's expiry, so receivers skip fetching
// what has expired; serf's protocol 5 underneath instead of 4.
const (
	ProtocolMin = 1
	ProtocolMax = 2
)

// serfProtocol maps a splicefleet protocol version to the serf protocol
// version spoken under it.
var serfProtocol = map[uint8]uint8{1: 4, 2: 5}

// SerfProtocol returns the serf protocol version spoken under splicefleet
// protocol version v (0 when v is not one this build speaks).
func SerfProtocol(v uint8) uint8 { return serfProtocol[v] }

// AnnounceEvent is the serf user event name that carries announcements.
const AnnounceEvent = "sf-announce"

// Limits of the announcement encoding. MaxAnnouncementSize bounds what
// DecodeAnnouncement reads; the largest valid version-1 announcement plus
// the event name stays well under serf's 512-byte user event limit.
const (
	MaxAnnouncementSize = 512 - len(AnnounceEvent)
	maxIDLen            = 64
	maxOriginLen        = 255
)

var (
	// ErrMalformed reports an announcement that cannot be decoded or that
	// carries an invalid field.
	ErrMalformed = errors.New("malformed announcement")
	// ErrUnknownProtocol reports an announcement of a protocol version
	// outside [ProtocolMin, ProtocolMax]. Callers ignore it and count it.
	ErrUnknownProtocol = errors.New("unknown announcement protocol")
)

// Announcement tells the fleet that a bundle exists and where to fetch it.
// It is a hint, not a credential: any gossip member can forge one, so the
// receiver verifies the bundle's signatures before it acts.
type Announcement struct {
	// Protocol is the announcement protocol version; zero means
	// ProtocolMax when encoding.
	Protocol uint8
	// ID names the bundle: ^[a-z0-9][a-z0-9._-]{0,63}$.
	ID string
	// Version is the bundle's version.
	Version uint64
	// ManifestDigest is the lowercase hex SHA-256 of the bundle manifest.
	ManifestDigest string
	// Size is the size in bytes of the bundle; it must be positive.
	Size int64
	// Origin is the host:port of a blob service that holds the bundle.
	Origin string
	// Expires is the bundle's signed expiry, zero for none; version 2
	// only (version 1 drops it). A hint like the rest: it lets a
	// receiver skip fetching an expired bundle, and the signed manifest
	// decides.
	Expires time.Time
}

// Wire layout, all integers big-endian:
//
//	version 1: protocol u8 | len(id) u8 | id | version u64 |
//	           digest [32]byte | size u64 | len(origin) u8 | origin
//	version 2: version 1 | expires u64 (Unix seconds, 0 for none)
//
// Fixed-width integers and a raw digest make the encoding canonical: every
// accepted payload re-encodes to the same bytes.
const v1FixedLen = 1 + 1 + 8 + 32 + 8 + 1

// EncodeAnnouncement validates a and returns its wire form.
func EncodeAnnouncement(a Announcement) ([]byte, error) {
	if a.Protocol == 0 {
		a.Protocol = ProtocolMax
	}
	if a.Protocol < ProtocolMin || a.Protocol > ProtocolMax {
		return nil, fmt.Errorf("encode announcement: protocol %d: %w", a.Protocol, ErrUnknownProtocol)
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("encode announcement: %w", err)
	}
	if a.Protocol >= 2 && !a.Expires.IsZero() && (a.Expires.Unix() <= 0 || a.Expires.Unix() > maxExpires) {
		return nil, fmt.Errorf("encode announcement: %w: expiry %s outside 1970 to 9999", ErrMalformed, a.Expires)
	}
	digest, _ := hex.DecodeString(a.ManifestDigest) // validated above
	b := make([]byte, 0, v1FixedLen+8+len(a.ID)+len(a.Origin))
	b = append(b, a.Protocol, byte(len(a.ID)))
	b = append(b, a.ID...)
	b = binary.BigEndian.AppendUint64(b, a.Version)
	b = append(b, digest...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Size))
	b = append(b, byte(len(a.Origin)))
	b = append(b, a.Origin...)
	if a.Protocol >= 2 {
		var exp uint64
		if !a.Expires.IsZero() {
			exp = uint64(a.Expires.Unix())
		}
		b = binary.BigEndian.AppendUint64(b, exp)
	}
	return b, nil
}

// DecodeAnnouncement parses a payload made by EncodeAnnouncement. It reads
// at most MaxAnnouncementSize bytes. A version outside [ProtocolMin,
// ProtocolMax] yields ErrUnknownProtocol before anything else is parsed;
// every other defect yields ErrMalformed.
func DecodeAnnouncement(b []byte) (Announcement, error) {
	return decodeAnnouncement(b, ProtocolMax)
}

// decodeAnnouncement is DecodeAnnouncement for a node that decodes
// versions up to newest.
func decodeAnnouncement(b []byte, newest uint8) (Announcement, error) {
	if len(b) == 0 {
		return Announcement{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(b) > MaxAnnouncementSize {
		return Announcement{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), MaxAnnouncementSize)
	}
	if b[0] < ProtocolMin || b[0] > newest {
		return Announcement{}, fmt.Errorf("protocol %d (this node decodes %d-%d): %w", b[0], ProtocolMin, newest, ErrUnknownProtocol)
	}
	r := reader{b: b[1:]}
	a := Announcement{Protocol: b[0]}
	a.ID = string(r.bytes(int(r.u8())))
	a.Version = r.u64()
	a.ManifestDigest = hex.EncodeToString(r.bytes(32))
	size := r.u64()
	a.Origin = string(r.bytes(int(r.u8())))
	var exp uint64
	if a.Protocol >= 2 {
		exp = r.u64()
	}
	if r.short {
		return Announcement{}, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	if len(r.b) != 0 {
		return Announcement{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if size > 1<<63-1 {
		return Announcement{}, fmt.Errorf("%w: size overflows int64", ErrMalformed)
	}
	a.Size = int64(size)
	if exp > maxExpires {
		return Announcement{}, fmt.Errorf("%w: expiry %d is past the year 9999", ErrMalformed, exp)
	}
	if exp != 0 {
		a.Expires = time.Unix(int64(exp), 0).UTC()
	}
	if err := a.validate(); err != nil {
		return Announcement{}, err
	}
	return a, nil
}

// maxExpires is the last second of the year 9999, the end of RFC 3339.
const maxExpires = 253402300799

// reader consumes a byte slice; a short read sets short and yields zeros.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) bytes(n int) []byte {
	if r.short || len(r.b) < n {
		r.short = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u64() uint64 {
	v := r.bytes(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (a Announcement) validate() error {
	if !validID(a.ID) {
		return fmt.Errorf("%w: bundle id %q does not match ^[a-z0-9][a-z0-9._-]{0,63}$", ErrMalformed, a.ID)
	}
	if !validDigest(a.ManifestDigest) {
		return fmt.Errorf("%w: manifest digest %q is not 64 lowercase hex digits", ErrMalformed, a.ManifestDigest)
	}
	if a.Size <= 0 {
		return fmt.Errorf("%w: size %d is not positive", ErrMalformed, a.Size)
	}
	if err := validOrigin(a.Origin); err != nil {
		return fmt.Errorf("%w: origin %q: %v", ErrMalformed, a.Origin, err)
	}
	return nil
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func validDigest(d string) bool {
	if len(d) != 64 {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validOrigin accepts host:port where host is an IP address (IPv6 in
// brackets) or a DNS name, and port is a decimal in 1-65535 without a
// leading zero.
func validOrigin(o string) error {
	if len(o) > maxOriginLen {
		return fmt.Errorf("longer than %d bytes", maxOriginLen)
	}
	host, port, err := net.SplitHostPort(o)
	if err != nil {
		return err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		return errors.New("empty host")
	}
	if ip := net.ParseIP(host); ip != nil {
		if strings.Contains(host, ":") != (o[0] == '[') {
			return errors.New("brackets go around IPv6 addresses and nothing else")
		}
		return nil
	}
	if o[0] == '[' {
		return errors.New("brackets around a name")
	}
	return validHostname(host)
}

func validHostname(h string) error {
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			label++
		case c == '-' && label > 0:
			label++
		case c == '.' && label > 0:
			label = 0
			continue
		default:
			return fmt.Errorf("bad host name %q", h)
		}
		if label > 63 {
			return fmt.Errorf("host name label longer than 63 bytes")
		}
	}
	if label == 0 || h[len(h)-1] == '-' {
		return fmt.Errorf("bad host name %q", h)
	}
	return nil
}
