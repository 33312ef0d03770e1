package rollout

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxWindowSpec bounds the text of a window spec, in bytes.
const MaxWindowSpec = 256

// Window is a recurring maintenance window: from a start time to an end time of day, on some
// days of the week, in a Schedule's location. A window whose end is not after its start
// crosses midnight and ends on the next day; its day is the day it starts.
type Window struct {
	days       [7]bool // by time.Weekday
	start, end int     // seconds since midnight; end in (0, 86400]
	spec       string
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseWindow parses a window spec: "[DAYS] START-END". DAYS is "daily" (the default) or a
// comma-separated list of days and day ranges such as "Mon-Fri", "Sat,Sun" or "Fri-Mon" (a
// range may wrap around the week), by English name or its first three letters, in any case.
// START and END are times of day HH:MM or HH:MM:SS (24-hour clock); END may be 24:00. An END
// not after START crosses midnight: "daily 22:00-06:00" is every night.
func ParseWindow(spec string) (Window, error) {
	w, err := parseWindow(spec)
	if err != nil {
		return Window{}, fmt.Errorf("%w %q: %w (want e.g. \"Mon-Fri 01:00-05:00\" or \"daily 22:00-06:00\")", ErrInvalidWindow, clip(spec), err)
	}
	return w, nil
}

func parseWindow(spec string) (Window, error) {
	if len(spec) > MaxWindowSpec {
		return Window{}, fmt.Errorf("longer than %d bytes", MaxWindowSpec)
	}
	fields := strings.Fields(spec)
	w := Window{spec: strings.Join(fields, " ")}
	var times string
	switch len(fields) {
	case 1:
		times = fields[0]
		w.days = [7]bool{true, true, true, true, true, true, true}
	case 2:
		times = fields[1]
		days, err := parseDays(fields[0])
		if err != nil {
			return Window{}, err
		}
		w.days = days
	default:
		return Window{}, fmt.Errorf("want days and a time range")
	}
	from, to, ok := strings.Cut(times, "-")
	if !ok {
		return Window{}, fmt.Errorf("time range %q: want START-END", clip(times))
	}
	var err error
	if w.start, err = parseClock(from); err != nil {
		return Window{}, err
	}
	if w.start == 24*3600 {
		return Window{}, fmt.Errorf("start %q: 24:00 is only an end", from)
	}
	if w.end, err = parseClock(to); err != nil {
		return Window{}, err
	}
	if w.end == w.start {
		return Window{}, fmt.Errorf("start and end are both %s: an empty window (a whole day is 00:00-24:00)", from)
	}
	if w.end == 0 {
		w.end = 24 * 3600 // "22:00-00:00" ends at midnight
	}
	return w, nil
}

// parseDays parses "daily" or a list of days and day ranges.
func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if strings.EqualFold(s, "daily") {
		return [7]bool{true, true, true, true, true, true, true}, nil
	}
	for _, item := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(item, "-")
		a, ok := dayNames[strings.ToLower(from)]
		if !ok {
			return days, fmt.Errorf("day %q: want daily, or Mon, Tue, Wed, Thu, Fri, Sat, Sun, lists and ranges of them", clip(from))
		}
		b := a
		if isRange {
			if b, ok = dayNames[strings.ToLower(to)]; !ok {
				return days, fmt.Errorf("day %q: want daily, or Mon, Tue, Wed, Thu, Fri, Sat, Sun, lists and ranges of them", clip(to))
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return days, nil
}

// parseClock parses HH:MM or HH:MM:SS into seconds since midnight; 24:00 (and 24:00:00) is
// 86400.
func parseClock(s string) (int, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("time %q: want HH:MM or HH:MM:SS", clip(s))
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || len(p) < 1 || len(p) > 2 || p[0] == '+' || p[0] == '-' {
			return 0, fmt.Errorf("time %q: want HH:MM or HH:MM:SS", clip(s))
		}
		v[i] = n
	}
	if v[0] == 24 && v[1] == 0 && v[2] == 0 {
		return 24 * 3600, nil
	}
	if v[0] > 23 || v[1] > 59 || v[2] > 59 || len(parts[1]) != 2 || len(parts) == 3 && len(parts[2]) != 2 {
		return 0, fmt.Errorf("time %q: out of range (00:00 to 23:59:59, or 24:00 as an end)", clip(s))
	}
	return v[0]*3600 + v[1]*60 + v[2], nil
}

// String is the spec w was parsed from, with its spaces normalized.
func (w Window) String() string { return w.spec }

// on returns the window that starts on the day of day (a time at midnight in its location),
// if w is open that day.
func (w Window) on(day time.Time) (start, end time.Time, ok bool) {
	if !w.days[day.Weekday()] {
		return time.Time{}, time.Time{}, false
	}
	y, m, d := day.Date()
	start = time.Date(y, m, d, 0, 0, w.start, 0, day.Location())
	endDay := d
	if w.end <= w.start {
		endDay++
	}
	end = time.Date(y, m, endDay, 0, 0, w.end, 0, day.Location())
	return start, end, true
}

// Schedule is the maintenance windows of an agent, in Location (nil: local time). A Schedule
// without windows is always open.
type Schedule struct {
	Windows  []Window
	Location *time.Location
}

// ParseSchedule parses window specs (see ParseWindow) in the time zone tz ("" or "Local":
// local time; else an IANA name such as Europe/Paris or UTC).
func ParseSchedule(specs []string, tz string) (Schedule, error) {
	s := Schedule{Location: time.Local}
	if tz != "" && tz != "Local" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return Schedule{}, fmt.Errorf("time zone %q: %w", clip(tz), err)
		}
		s.Location = loc
	}
	for _, spec := range specs {
		w, err := ParseWindow(spec)
		if err != nil {
			return Schedule{}, err
		}
		s.Windows = append(s.Windows, w)
	}
	return s, nil
}

func (s Schedule) loc() *time.Location {
	if s.Location == nil {
		return time.Local
	}
	return s.Location
}

// midnight is the start of the day of t in loc, offset by days.
func midnight(t time.Time, loc *time.Location, days int) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d+days, 0, 0, 0, 0, loc)
}

// Open reports whether t is inside one of the windows (always, without windows).
func (s Schedule) Open(t time.Time) bool {
	if len(s.Windows) == 0 {
		return true
	}
	for _, w := range s.Windows {
		for _, off := range []int{-1, 0} { // a window of yesterday may cross midnight into today
			if start, end, ok := w.on(midnight(t, s.loc(), off)); ok && !t.Before(start) && t.Before(end) {
				return true
			}
		}
	}
	return false
}

// Next returns t if the schedule is open at t, else the start of the next window after t.
// Every valid schedule opens within a week.
func (s Schedule) Next(t time.Time) time.Time {
	if s.Open(t) {
		return t
	}
	var next time.Time
	for _, w := range s.Windows {
		for off := 0; off <= 7; off++ {
			start, _, ok := w.on(midnight(t, s.loc(), off))
			if ok && start.After(t) && (next.IsZero() || start.Before(next)) {
				next = start
			}
		}
	}
	return next
}

// String lists the windows, e.g. "Mon-Fri 01:00-05:00, Sat 00:00-24:00 (Europe/Paris)".
func (s Schedule) String() string {
	if len(s.Windows) == 0 {
		return "any time"
	}
	parts := make([]string, len(s.Windows))
	for i, w := range s.Windows {
		parts[i] = w.String()
	}
	return strings.Join(parts, ", ") + " (" + s.loc().String() + ")"
}
