package lab

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Size is a byte count written as "256MiB", "32MiB", "64KiB" or a plain number. In a link
// it is a rate: bytes per second.
type Size int64

// UnmarshalText parses a size such as "20MiB".
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the size in IEC units.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON writes the size as a number of bytes, for machines.
func (s Size) MarshalJSON() ([]byte, error) { return strconv.AppendInt(nil, int64(s), 10), nil }

// UnmarshalJSON reads a number of bytes or a size string.
func (s *Size) UnmarshalJSON(b []byte) error {
	if v, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		*s = Size(v)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("size %s: %w", b, err)
	}
	return s.UnmarshalText([]byte(str))
}

// String is the size in IEC units, e.g. "256 MiB".
func (s Size) String() string { return humanize.IBytes(uint64(max(s, 0))) }

// ParseSize parses "20MiB", "1.5GiB", "64KiB", "1000" (bytes).
func ParseSize(s string) (Size, error) {
	v, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return Size(v), nil
}

// Percent is a share written as "30%" or as a fraction "0.3". Its value is the fraction.
type Percent float64

// UnmarshalText parses "30%" or "0.3".
func (p *Percent) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	scale := 1.0
	if strings.HasSuffix(s, "%") {
		s, scale = strings.TrimSuffix(s, "%"), 0.01
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("percent %q: %w", string(b), err)
	}
	*p = Percent(v * scale)
	return nil
}

// MarshalText writes the share as "30%".
func (p Percent) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// MarshalJSON writes the share as a fraction, for machines.
func (p Percent) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(p), 'g', -1, 64), nil
}

// UnmarshalJSON reads a fraction or a "30%" string.
func (p *Percent) UnmarshalJSON(b []byte) error {
	if v, err := strconv.ParseFloat(string(b), 64); err == nil {
		*p = Percent(v)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("percent %s: %w", b, err)
	}
	return p.UnmarshalText([]byte(str))
}

// String is the share as "30%".
func (p Percent) String() string { return strconv.FormatFloat(float64(p)*100, 'f', -1, 64) + "%" }

// Duration is a time.Duration written as "10s", "1m30s".
type Duration time.Duration

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("duration %q: %w", string(b), err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Amount is a size written either in bytes ("128MiB") or as a share of the release ("50%").
type Amount struct {
	Bytes Size
	Share Percent
}

// UnmarshalText parses "50%" or a size.
func (a *Amount) UnmarshalText(b []byte) error {
	if strings.HasSuffix(strings.TrimSpace(string(b)), "%") {
		*a = Amount{}
		return a.Share.UnmarshalText(b)
	}
	*a = Amount{}
	return a.Bytes.UnmarshalText(b)
}

// MarshalText writes the amount as it was given.
func (a Amount) MarshalText() ([]byte, error) {
	if a.Share > 0 {
		return a.Share.MarshalText()
	}
	return a.Bytes.MarshalText()
}

// Of is the amount in bytes for a release of f bytes (def if unset).
func (a Amount) Of(f, def Size) Size {
	switch {
	case a.Share > 0:
		return Size(float64(a.Share) * float64(f))
	case a.Bytes > 0:
		return a.Bytes
	}
	return def
}
