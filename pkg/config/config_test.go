package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testSchema has one option of every kind.
var testSchema = Schema{Command: "agent", Options: map[string]Kind{
	"data": String, "seeder": List, "once": Bool, "max-peers": Int, "interval": Duration,
	"upload-rate": String,
}}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Setting
		wantErr error  // a sentinel, nil for success
		wantMsg string // part of the error text
	}{
		{name: "empty", in: ""},
		{name: "comments only", in: "# nothing\n\n"},
		{name: "every kind", in: "data: /var/lib/a\nseeder: [https://a, 'https://b']\nonce: true\nmax-peers: 3\ninterval: 1m30s\nupload-rate: 20MiB\n",
			want: []Setting{
				{Key: "data", Line: 1, Values: []string{"/var/lib/a"}},
				{Key: "seeder", Line: 2, Values: []string{"https://a", "https://b"}},
				{Key: "once", Line: 3, Values: []string{"true"}},
				{Key: "max-peers", Line: 4, Values: []string{"3"}},
				{Key: "interval", Line: 5, Values: []string{"1m30s"}},
				{Key: "upload-rate", Line: 6, Values: []string{"20MiB"}},
			}},
		{name: "block list", in: "seeder:\n  - https://a\n  - https://b\n",
			want: []Setting{{Key: "seeder", Line: 1, Values: []string{"https://a", "https://b"}}}},
		{name: "one scalar for a list", in: "seeder: https://a\n",
			want: []Setting{{Key: "seeder", Line: 1, Values: []string{"https://a"}}}},
		{name: "empty list", in: "seeder: []\n", want: []Setting{{Key: "seeder", Line: 1, Values: []string{}}}},
		{name: "numbers keep their text", in: "upload-rate: 0\ndata: 1.10\nmax-peers: 0x10\n",
			want: []Setting{
				{Key: "upload-rate", Line: 1, Values: []string{"0"}},
				{Key: "data", Line: 2, Values: []string{"1.10"}},
				{Key: "max-peers", Line: 3, Values: []string{"0x10"}},
			}},
		{name: "quoted key and flow mapping", in: `{"data": x, once: false}`,
			want: []Setting{{Key: "data", Line: 1, Values: []string{"x"}}, {Key: "once", Line: 1, Values: []string{"false"}}}},
		{name: "quoted scalars are text too", in: "max-peers: \"2\"\nonce: 'true'\ninterval: \"90s\"\n",
			want: []Setting{
				{Key: "max-peers", Line: 1, Values: []string{"2"}},
				{Key: "once", Line: 2, Values: []string{"true"}},
				{Key: "interval", Line: 3, Values: []string{"90s"}},
			}},
		{name: "host port", in: "data: 0.0.0.0:7070\n", want: []Setting{{Key: "data", Line: 1, Values: []string{"0.0.0.0:7070"}}}},

		{name: "unknown key", in: "data: x\n\nintervall: 1m\n", wantErr: ErrUnknownKey,
			wantMsg: `config agent.yaml: line 3: unknown key "intervall" (did you mean "interval"? agent options: data, interval, max-peers, once, seeder, upload-rate)`},
		{name: "unknown key far from all", in: "zzzzzzzz: 1\n", wantErr: ErrUnknownKey, wantMsg: `unknown key "zzzzzzzz" (agent options:`},
		{name: "config key", in: "config: other.yaml\n", wantErr: ErrUnknownKey, wantMsg: `unknown key "config"`},
		{name: "merge key", in: "<<: {data: x}\n", wantErr: ErrUnknownKey, wantMsg: `line 1: unknown key "<<"`},
		{name: "nested options", in: "agent:\n  data: x\n", wantErr: ErrUnknownKey, wantMsg: `unknown key "agent"`},
		{name: "duplicate key", in: "data: x\ndata: y\n", wantErr: ErrSyntax, wantMsg: "line 2: invalid config: mapping key \"data\" already defined"},
		{name: "list for a string", in: "data: [a, b]\n", wantErr: ErrType, wantMsg: `line 1: key "data": wrong type: want a string, got a list`},
		{name: "mapping for a list", in: "seeder: {a: b}\n", wantErr: ErrType, wantMsg: `key "seeder": wrong type: want a list of strings, got a mapping`},
		{name: "list in a list", in: "seeder: [[a]]\n", wantErr: ErrType, wantMsg: `got a list in the list`},
		{name: "null", in: "data:\n", wantErr: ErrType, wantMsg: `key "data": wrong type: want a string, got no value`},
		{name: "yes is not a bool", in: "once: yes\n", wantErr: ErrValue, wantMsg: `key "once": bad value: "yes": want true or false`},
		{name: "list for a bool", in: "once: [true]\n", wantErr: ErrType, wantMsg: `key "once": wrong type: want true or false, got a list`},
		{name: "words for an int", in: "max-peers: two\n", wantErr: ErrValue, wantMsg: `key "max-peers": bad value: "two": want an integer`},
		{name: "int overflow", in: "max-peers: 99999999999999999999999\n", wantErr: ErrValue, wantMsg: `key "max-peers": bad value`},
		{name: "duration without unit", in: "interval: 60\n", wantErr: ErrValue, wantMsg: `line 1: key "interval": bad value: "60": want a duration`},
		{name: "bad duration", in: "once: false\ninterval: soon\n", wantErr: ErrValue, wantMsg: `line 2: key "interval": bad value: "soon"`},
		{name: "alias", in: "data: &a x\nupload-rate: *a\n", wantErr: ErrType, wantMsg: "anchor or alias"},
		{name: "tag", in: "data: !!str x\n", wantErr: ErrType, wantMsg: "tagged value"},
		{name: "not a mapping", in: "- data\n", wantErr: ErrSyntax, wantMsg: "want a mapping of option: value, got a list"},
		{name: "scalar document", in: "hello\n", wantErr: ErrSyntax, wantMsg: "want a mapping"},
		{name: "two documents", in: "data: x\n---\nonce: true\n", wantErr: ErrSyntax, wantMsg: "line 3: invalid config: a second YAML document (---)"},
		{name: "bad indentation", in: "data: x\n  once: true\n", wantErr: ErrSyntax, wantMsg: "line 1: invalid config:"},
		{name: "not utf-8", in: "data: \xff\n", wantErr: ErrSyntax, wantMsg: "not UTF-8"},
		{name: "deep flow nesting", in: "seeder: " + strings.Repeat("[\n", 20000), wantErr: ErrSyntax, wantMsg: "line 17: invalid config: lists and mappings nested more than 16 deep"},
		{name: "deep block nesting", in: "seeder:\n" + strings.Repeat("- ", 2000), wantErr: ErrSyntax, wantMsg: "line 2: invalid config: lists and mappings nested more than 16 deep"},
		{name: "nesting depth is not length", in: "seeder: [" + strings.Repeat("[[[[[[[[[[]]]]]]]]]],", 100) + "]\n", wantErr: ErrType, wantMsg: "got a list in the list"},
		{name: "long line", in: "data: x\nseeder: [" + strings.Repeat("<", MaxLine) + "]\n", wantErr: ErrSyntax, wantMsg: "line 2: invalid config: line longer than 4096 bytes"},
		{name: "long lines are fine up to MaxLine", in: "data: " + strings.Repeat("<", MaxLine-6) + "\n",
			want: []Setting{{Key: "data", Line: 1, Values: []string{strings.Repeat("<", MaxLine-6)}}}},
		{name: "too large", in: "data: x\n" + strings.Repeat("#", MaxSize), wantErr: ErrTooLarge, wantMsg: "config agent.yaml: file too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("agent.yaml", []byte(tt.in), testSchema)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.Settings, tt.want) {
				t.Fatalf("settings %+v, want %+v", f.Settings, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(good, []byte("data: /var/lib/a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("# padding\n", MaxSize/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr error
		wantMsg string
	}{
		{name: "ok", path: good},
		{name: "missing", path: filepath.Join(dir, "nope.yaml"), wantErr: fs.ErrNotExist, wantMsg: "config " + dir + "/nope.yaml: no such file or directory"},
		{name: "directory", path: dir, wantErr: ErrIsDir, wantMsg: "config " + dir + ": is a directory, want a YAML file"},
		{name: "too large", path: big, wantErr: ErrTooLarge, wantMsg: "file too large: over 64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Load(tt.path, testSchema)
			if tt.wantErr == nil {
				if err != nil || len(f.Settings) != 1 || f.Path != tt.path {
					t.Fatalf("Load = %+v, %v", f, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || err.Error() != tt.wantMsg && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	f := &File{Path: "a.yaml"}
	err := f.Errorf(Setting{Key: "upload-rate", Line: 4}, errors.New("want bytes per second"))
	if !errors.Is(err, ErrValue) || err.Error() != `config a.yaml: line 4: key "upload-rate": bad value: want bytes per second` {
		t.Fatalf("Errorf = %v", err)
	}
}

// FuzzConfig feeds arbitrary bytes to the parser: it must refuse with a one-line *Error or
// return only known keys, each once, with values their flags accept. testdata/fuzz/FuzzConfig
// keeps its findings: inputs that took the YAML scanner or parser seconds (long lines, deep
// nesting) before MaxLine and maxNesting.
func FuzzConfig(f *testing.F) {
	for _, path := range []string{"../../configs/agent.yaml", "../../configs/seeder.yaml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "data: x\n", "seeder: [a, b]\nonce: true\nmax-peers: 0x10\ninterval: 1m\n",
		"seeder:\n  - a\n  - b\n", "{data: x, once: false}", "intervall: 1m\n", "data: x\ndata: y\n",
		"data: &a x\nupload-rate: *a\n", "<<: {data: x}\n", "---\ndata: x\n---\n", "? data\n: x\n",
		"data: |\n  multi\n  line\n", "data: !!str 1\n", "- a\n", "data: [\n", "\"da\\u0074a\": x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz.yaml", b, testSchema)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Path != "fuzz.yaml" {
				t.Fatalf("error %v (%T) is not a *Error of the file", err, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, s := range file.Settings {
			kind, ok := testSchema.Options[s.Key]
			if !ok {
				t.Fatalf("accepted unknown key %q", s.Key)
			}
			if seen[s.Key] {
				t.Fatalf("accepted key %q twice", s.Key)
			}
			seen[s.Key] = true
			if kind != List && len(s.Values) != 1 {
				t.Fatalf("key %q: %d values", s.Key, len(s.Values))
			}
			for _, v := range s.Values {
				switch kind {
				case Bool:
					_, err = strconv.ParseBool(v)
				case Int:
					_, err = strconv.ParseInt(v, 0, strconv.IntSize)
				case Duration:
					_, err = time.ParseDuration(v)
				}
				if err != nil {
					t.Fatalf("accepted key %q with a value its flag refuses: %v", s.Key, err)
				}
			}
		}
	})
}
