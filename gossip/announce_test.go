package gossip

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func maximal() Announcement {
	return Announcement{
		ID:             "a" + strings.Repeat("z", maxIDLen-1),
		Version:        ^uint64(0),
		ManifestDigest: strings.Repeat("f", 64),
		Size:           1<<63 - 1,
		Origin:         strings.Repeat(strings.Repeat("h", 63)+".", 3) + strings.Repeat("h", maxOriginLen-3*64-6) + ":65535",
		Expires:        time.Unix(maxExpires, 0).UTC(),
	}
}

// TestAnnouncementVersions: version 2 carries the expiry, version 1 drops
// it and is 8 bytes shorter, and a node that decodes only version 1
// refuses version 2 as an unknown protocol, not as garbage.
func TestAnnouncementVersions(t *testing.T) {
	t.Parallel()
	a := testAnnouncement("kpatch-1")
	a.Expires = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	a.Protocol = 1
	v1, err := EncodeAnnouncement(a)
	if err != nil {
		t.Fatal(err)
	}
	a.Protocol = 2
	v2, err := EncodeAnnouncement(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(v2) != len(v1)+8 || v1[0] != 1 || v2[0] != 2 {
		t.Fatalf("v1 %d bytes (protocol %d), v2 %d bytes (protocol %d)", len(v1), v1[0], len(v2), v2[0])
	}
	got1, err := DecodeAnnouncement(v1)
	if err != nil || got1.Protocol != 1 || !got1.Expires.IsZero() {
		t.Errorf("v1 decodes to %+v, %v; want protocol 1 and no expiry", got1, err)
	}
	got2, err := DecodeAnnouncement(v2)
	if err != nil || got2.Protocol != 2 || !got2.Expires.Equal(a.Expires) {
		t.Errorf("v2 decodes to %+v, %v; want protocol 2 expiring %s", got2, err, a.Expires)
	}
	if _, err := decodeAnnouncement(v2, 1); !errors.Is(err, ErrUnknownProtocol) {
		t.Errorf("a version-1 node decoding v2: %v, want ErrUnknownProtocol", err)
	}
	if _, err := decodeAnnouncement(v1, 1); err != nil {
		t.Errorf("a version-1 node decoding v1: %v", err)
	}
	a.Expires = time.Unix(-1, 0)
	if _, err := EncodeAnnouncement(a); !errors.Is(err, ErrMalformed) {
		t.Errorf("expiry before 1970: %v, want ErrMalformed", err)
	}
}

func TestAnnouncementRoundTrip(t *testing.T) {
	t.Parallel()
	for _, a := range []Announcement{
		testAnnouncement("kpatch-1"),
		{ID: "0", ManifestDigest: strings.Repeat("0", 64), Size: 1, Origin: "[::1]:1"},
		{ID: "x.y_z-1", Version: 1, ManifestDigest: strings.Repeat("a", 64), Size: 42, Origin: "blob.example.org:8443"},
		maximal(),
	} {
		b, err := EncodeAnnouncement(a)
		if err != nil {
			t.Fatalf("encode %+v: %v", a, err)
		}
		got, err := DecodeAnnouncement(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", a, err)
		}
		a.Protocol = ProtocolMax
		if got.Expires.Equal(a.Expires) {
			got.Expires = a.Expires
		}
		if got != a {
			t.Errorf("round trip: got %+v, want %+v", got, a)
		}
	}
}

func TestAnnouncementFitsUserEvent(t *testing.T) {
	t.Parallel()
	a := maximal()
	if len(a.Origin) != maxOriginLen {
		t.Fatalf("maximal origin is %d bytes, want %d", len(a.Origin), maxOriginLen)
	}
	b, err := EncodeAnnouncement(a)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(AnnounceEvent) + len(b); n >= 512 {
		t.Errorf("largest announcement event is %d bytes, serf's limit is 512", n)
	} else {
		t.Logf("largest announcement event: %d bytes", n)
	}
	a.Origin = "h" + a.Origin
	if _, err := EncodeAnnouncement(a); !errors.Is(err, ErrMalformed) {
		t.Errorf("origin over %d bytes: %v", maxOriginLen, err)
	}
}

func TestEncodeRejectsInvalidFields(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Announcement){
		"empty id":           func(a *Announcement) { a.ID = "" },
		"uppercase id":       func(a *Announcement) { a.ID = "Kpatch" },
		"id starts with dot": func(a *Announcement) { a.ID = ".x" },
		"id with slash":      func(a *Announcement) { a.ID = "a/b" },
		"id too long":        func(a *Announcement) { a.ID = strings.Repeat("a", 65) },
		"short digest":       func(a *Announcement) { a.ManifestDigest = "abcd" },
		"uppercase digest":   func(a *Announcement) { a.ManifestDigest = strings.Repeat("A", 64) },
		"zero size":          func(a *Announcement) { a.Size = 0 },
		"negative size":      func(a *Announcement) { a.Size = -1 },
		"origin no port":     func(a *Announcement) { a.Origin = "127.0.0.1" },
		"origin port zero":   func(a *Announcement) { a.Origin = "127.0.0.1:0" },
		"origin port 0080":   func(a *Announcement) { a.Origin = "127.0.0.1:0080" },
		"origin port big":    func(a *Announcement) { a.Origin = "127.0.0.1:65536" },
		"origin empty host":  func(a *Announcement) { a.Origin = ":80" },
		"origin bad name":    func(a *Announcement) { a.Origin = "a_b:80" },
		"origin bare ipv6":   func(a *Announcement) { a.Origin = "::1:80" },
		"origin [ipv4]":      func(a *Announcement) { a.Origin = "[127.0.0.1]:80" },
		"origin zone":        func(a *Announcement) { a.Origin = "[fe80::1%eth0]:80" },
		"origin with path":   func(a *Announcement) { a.Origin = "host/x:80" },
	} {
		a := testAnnouncement("ok")
		mutate(&a)
		if _, err := EncodeAnnouncement(a); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	a := testAnnouncement("ok")
	a.Protocol = ProtocolMax + 1
	if _, err := EncodeAnnouncement(a); !errors.Is(err, ErrUnknownProtocol) {
		t.Errorf("encode protocol %d: %v, want ErrUnknownProtocol", a.Protocol, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	good, err := EncodeAnnouncement(testAnnouncement("kpatch-1"))
	if err != nil {
		t.Fatal(err)
	}
	with := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	// Offsets in good: 0 protocol, 1 id length, 2..9 id, 10..17 version,
	// 18..49 digest, 50..57 size, 58 origin length, 59.. origin, the last
	// 8 bytes the expiry.
	sizeAt := 2 + len("kpatch-1") + 8 + 32
	expiresAt := len(good) - 8
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":             {nil, ErrMalformed},
		"protocol 0":        {[]byte{0}, ErrUnknownProtocol},
		"protocol next":     {with(0, ProtocolMax+1), ErrUnknownProtocol},
		"protocol 255 long": {append([]byte{255}, make([]byte, 100)...), ErrUnknownProtocol},
		"only protocol":     {[]byte{ProtocolMax}, ErrMalformed},
		"truncated":         {good[:len(good)-1], ErrMalformed},
		"trailing byte":     {append(bytes.Clone(good), 0), ErrMalformed},
		"id length too big": {with(1, 200), ErrMalformed},
		"id length zero":    {with(1, 0), ErrMalformed},
		"bad id byte":       {with(2, 'K'), ErrMalformed},
		"size overflows":    {with(sizeAt, 0x80), ErrMalformed},
		"bad origin byte":   {with(expiresAt-1, '/'), ErrMalformed},
		"expiry past 9999":  {with(expiresAt, 0x80), ErrMalformed},
		"too large":         {make([]byte, MaxAnnouncementSize+1), ErrMalformed},
	} {
		_, err := DecodeAnnouncement(c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
}

func FuzzDecodeAnnouncement(f *testing.F) {
	for _, a := range []Announcement{testAnnouncement("kpatch-1"), maximal()} {
		b, err := EncodeAnnouncement(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Add([]byte{2, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAnnouncement(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownProtocol) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrUnknownProtocol", err)
			}
			return
		}
		re, err := EncodeAnnouncement(a)
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", a, err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", b, re)
		}
	})
}
