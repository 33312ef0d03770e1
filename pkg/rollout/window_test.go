package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		days    string // the open days, Sun first, as 0/1
		start   int
		end     int
		wantErr string
	}{
		{name: "weekdays", spec: "Mon-Fri 01:00-05:00", days: "0111110", start: 3600, end: 5 * 3600},
		{name: "daily across midnight", spec: "daily 22:00-06:00", days: "1111111", start: 22 * 3600, end: 6 * 3600},
		{name: "days omitted", spec: "02:30-03:00", days: "1111111", start: 9000, end: 3 * 3600},
		{name: "list and range, any case", spec: "sat,SUN,wed-thu 10:00-11:00", days: "1001101", start: 36000, end: 39600},
		{name: "range wrapping the week", spec: "Fri-Mon 00:00-24:00", days: "1100011", start: 0, end: 86400},
		{name: "full names", spec: "Monday,Friday 9:00-17:00", days: "0100010", start: 9 * 3600, end: 17 * 3600},
		{name: "seconds", spec: "daily 12:00:30-12:01:00", days: "1111111", start: 43230, end: 43260},
		{name: "until midnight", spec: "daily 22:00-00:00", days: "1111111", start: 22 * 3600, end: 86400},
		{name: "extra spaces", spec: "  Mon   01:00-02:00 ", days: "0100000", start: 3600, end: 7200},
		{name: "empty", spec: "", wantErr: "want days and a time range"},
		{name: "three fields", spec: "Mon Tue 01:00-02:00", wantErr: "want days and a time range"},
		{name: "unknown day", spec: "Mo 01:00-02:00", wantErr: `day "Mo"`},
		{name: "open range", spec: "Mon- 01:00-02:00", wantErr: `day ""`},
		{name: "no range", spec: "Mon 01:00", wantErr: "want START-END"},
		{name: "bad hour", spec: "Mon 25:00-26:00", wantErr: "out of range"},
		{name: "bad minute", spec: "Mon 01:60-02:00", wantErr: "out of range"},
		{name: "one-digit minute", spec: "Mon 01:5-02:00", wantErr: "out of range"},
		{name: "signed", spec: "Mon +1:00-02:00", wantErr: "want HH:MM"},
		{name: "no colon", spec: "Mon 0100-0200", wantErr: "want HH:MM"},
		{name: "24:00 start", spec: "Mon 24:00-02:00", wantErr: "only an end"},
		{name: "empty window", spec: "Mon 01:00-01:00", wantErr: "empty window"},
		{name: "too long", spec: "Mon " + strings.Repeat("x", MaxWindowSpec), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseWindow(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidWindow) {
					t.Fatalf("ParseWindow(%q) = %+v, %v; want an ErrInvalidWindow containing %q", tt.spec, w, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			days := ""
			for _, on := range w.days {
				days += map[bool]string{false: "0", true: "1"}[on]
			}
			if days != tt.days || w.start != tt.start || w.end != tt.end {
				t.Fatalf("ParseWindow(%q) = days %s, %d-%d; want %s, %d-%d", tt.spec, days, w.start, w.end, tt.days, tt.start, tt.end)
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// 2026-03-02 is a Monday; 2026-03-29 is the night Paris moves to summer time (02:00→03:00).
	tests := []struct {
		name     string
		specs    []string
		now      string
		wantOpen bool
		wantNext string // when closed
	}{
		{name: "no windows", now: "2026-03-02 12:00:00", wantOpen: true},
		{name: "inside", specs: []string{"Mon-Fri 01:00-05:00"}, now: "2026-03-02 01:00:00", wantOpen: true},
		{name: "end is exclusive", specs: []string{"Mon-Fri 01:00-05:00"}, now: "2026-03-02 05:00:00", wantNext: "2026-03-03 01:00:00"},
		{name: "before, same day", specs: []string{"Mon-Fri 01:00-05:00"}, now: "2026-03-02 00:59:59", wantNext: "2026-03-02 01:00:00"},
		{name: "Friday evening waits for Monday", specs: []string{"Mon-Fri 01:00-05:00"}, now: "2026-03-06 06:00:00", wantNext: "2026-03-09 01:00:00"},
		{name: "crossing midnight, after midnight", specs: []string{"daily 22:00-06:00"}, now: "2026-03-03 05:59:59", wantOpen: true},
		{name: "crossing midnight, before midnight", specs: []string{"daily 22:00-06:00"}, now: "2026-03-03 23:00:00", wantOpen: true},
		{name: "crossing midnight, day", specs: []string{"daily 22:00-06:00"}, now: "2026-03-03 12:00:00", wantNext: "2026-03-03 22:00:00"},
		{name: "the night belongs to its start day", specs: []string{"Fri 22:00-06:00"}, now: "2026-03-07 05:00:00", wantOpen: true},
		{name: "not the night before", specs: []string{"Fri 22:00-06:00"}, now: "2026-03-06 05:00:00", wantNext: "2026-03-06 22:00:00"},
		{name: "earliest of two windows", specs: []string{"Sat 10:00-11:00", "Mon-Fri 20:00-21:00"}, now: "2026-03-06 21:30:00", wantNext: "2026-03-07 10:00:00"},
		{name: "whole weekend day", specs: []string{"Sat,Sun 00:00-24:00"}, now: "2026-03-08 23:59:59", wantOpen: true},
		{name: "summer time: a window in the skipped hour starts after it", specs: []string{"daily 02:30-04:00"}, now: "2026-03-29 01:00:00", wantNext: "2026-03-29 03:30:00"},
		{name: "summer time: open across the change", specs: []string{"daily 01:00-04:00"}, now: "2026-03-29 03:10:00", wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSchedule(tt.specs, "Europe/Paris")
			if err != nil {
				t.Fatal(err)
			}
			now := at(tt.now)
			if got := s.Open(now); got != tt.wantOpen {
				t.Fatalf("Open(%s) = %v, want %v", tt.now, got, tt.wantOpen)
			}
			next := s.Next(now)
			if tt.wantOpen {
				if !next.Equal(now) {
					t.Fatalf("Next of an open schedule = %s, want now", next)
				}
				return
			}
			if want := at(tt.wantNext); !next.Equal(want) {
				t.Fatalf("Next(%s) = %s, want %s", tt.now, next.In(paris), want)
			}
			if !s.Open(next) {
				t.Fatalf("not open at Next = %s", next)
			}
		})
	}
	if _, err := ParseSchedule(nil, "Mars/Olympus"); err == nil {
		t.Fatal("an unknown time zone was accepted")
	}
}

// FuzzParseWindow feeds ParseWindow arbitrary text: it must not panic; a window it accepts
// must parse again from its String, and a schedule of it opens within a week of any time.
func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{
		"Mon-Fri 01:00-05:00", "daily 22:00-06:00", "Sat,Sun 00:00-24:00", "Fri-Mon 23:59:59-00:00:01",
		"12:00-13:00", "Mon 24:00-01:00", "mon,,tue 1:00-2:00", "Mon 01:00-01:00", "daily 9:7-10:00", "",
	} {
		f.Add(s)
	}
	base := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		w, err := ParseWindow(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalidWindow) {
				t.Fatalf("error %v is not ErrInvalidWindow", err)
			}
			return
		}
		again, err := ParseWindow(w.String())
		if err != nil || again != w {
			t.Fatalf("%q → %q → %+v, %v", spec, w.String(), again, err)
		}
		s := Schedule{Windows: []Window{w}, Location: time.UTC}
		next := s.Next(base)
		if next.IsZero() || next.Sub(base) > 8*24*time.Hour || !s.Open(next) {
			t.Fatalf("%q: Next(%s) = %s (open %v)", spec, base, next, s.Open(next))
		}
	})
}
