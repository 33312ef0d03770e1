// Package config reads the YAML files given to `peerpatch seeder --config` and
// `peerpatch agent --config`: one flat mapping from option names, which are the command's flag
// names, to values.
//
// Parse checks a file against the Schema of a command: unknown keys, wrong types (a list for
// a single value, a mapping, no value) and values the flag would refuse. It returns every value
// as the text the flag would be given on the command line, so the command line parser decodes
// file values and flags the same way. Every error
// names the file and, where it can, the line and the key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Sentinel errors, wrapped by every *Error.
var (
	// ErrUnknownKey reports a key that is not an option of the command.
	ErrUnknownKey = errors.New("unknown key")
	// ErrType reports a value whose YAML type does not fit its option (a list for a single
	// value, a string for a number, no value at all).
	ErrType = errors.New("wrong type")
	// ErrValue reports a value of the right type that its option refuses, such as a duration
	// without a unit.
	ErrValue = errors.New("bad value")
	// ErrSyntax reports a file that is not YAML, or not one mapping of keys to values.
	ErrSyntax = errors.New("invalid config")
	// ErrTooLarge reports a file larger than MaxSize.
	ErrTooLarge = errors.New("file too large")
	// ErrIsDir reports a config path that is a directory.
	ErrIsDir = errors.New("is a directory")
)

// MaxSize is the largest config file Load and Parse accept, in bytes. Real files are a few
// KiB; the bound keeps the YAML parser's time and memory small (it holds every token).
const MaxSize = 64 << 10

// MaxLine is the longest line Parse accepts, in bytes. The YAML scanner takes time quadratic
// in the length of some lines (a 64 KiB line can take seconds); config lines are short.
const MaxLine = 4 << 10

// Kind is the kind of value an option takes. A scalar is taken as text, as on the command
// line (20MiB, 1m, 2 and "2" are all text); the kind decides whether a list fits and which
// texts are valid.
type Kind int

// The kinds of option values, one per kind of command line flag.
const (
	// String takes any scalar (string, number or boolean), as written in the file.
	String Kind = iota + 1
	// List takes a sequence of scalars, or one scalar for a list of one; each element is one
	// value of a repeatable flag.
	List
	// Bool takes true or false (what strconv.ParseBool accepts, as a flag does).
	Bool
	// Int takes an integer (decimal, or 0x, 0o, 0b prefixed, as a flag does).
	Int
	// Duration takes a Go duration such as 90s or 1m30s.
	Duration
)

// want describes the values k takes, for error messages.
func (k Kind) want() string {
	switch k {
	case String:
		return "a string"
	case List:
		return "a list of strings"
	case Bool:
		return "true or false"
	case Int:
		return "an integer"
	case Duration:
		return "a duration such as 90s or 1m30s"
	}
	return "nothing (unknown kind)"
}

// Schema is the set of options of one command.
type Schema struct {
	// Command names the command in error messages, e.g. "agent".
	Command string
	// Options maps every option name (the flag name, without dashes) to its kind.
	Options map[string]Kind
}

// Setting is one key of a config file.
type Setting struct {
	// Key is the option name.
	Key string
	// Line is the 1-based line of the key in the file.
	Line int
	// Values holds the flag value text: exactly one for every kind but List, and one per
	// element (possibly none) for List.
	Values []string
}

// File is a parsed config file.
type File struct {
	// Path is the file's name as given to Load or Parse.
	Path string
	// Settings are the file's keys in file order; a key appears at most once.
	Settings []Setting
}

// Error is the error of every refused file. Its text is one line:
// `config PATH: line N: ...`.
type Error struct {
	// Path is the config file.
	Path string
	// Line is the 1-based line the error is about, or 0 when it is about the whole file.
	Line int
	// Key is the key the error is about (known or not), or "".
	Key string
	// Err wraps one of the sentinel errors of this package, or the error of reading the file.
	Err error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config %s: line %d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("config %s: %v", e.Path, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns the *Error of a value of s that a flag refused, wrapping ErrValue and err.
func (f *File) Errorf(s Setting, err error) error {
	return &Error{Path: f.Path, Line: s.Line, Key: s.Key, Err: fmt.Errorf("key %q: %w: %w", s.Key, ErrValue, err)}
}

// Load reads and parses the config file at path. It refuses a directory and a file larger
// than MaxSize before parsing.
func Load(path string, schema Schema) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Path: path, Err: pathless(err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, &Error{Path: path, Err: pathless(err)}
	} else if fi.IsDir() {
		return nil, &Error{Path: path, Err: fmt.Errorf("%w, want a YAML file", ErrIsDir)}
	}
	// Not only regular files: --config <(generate) is a pipe. The limit also bounds devices.
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, &Error{Path: path, Err: pathless(err)}
	}
	return Parse(path, data, schema)
}

// pathless drops the operation and path of a *fs.PathError: Error already names the file.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse parses data, the contents of the config file path, against schema.
func Parse(path string, data []byte, schema Schema) (*File, error) {
	fail := func(line int, key string, err error) (*File, error) {
		return nil, &Error{Path: path, Line: line, Key: key, Err: err}
	}
	if len(data) > MaxSize {
		return fail(0, "", fmt.Errorf("%w: over %d KiB, want a few settings", ErrTooLarge, MaxSize>>10))
	}
	if !utf8.Valid(data) {
		return fail(0, "", fmt.Errorf("%w: not UTF-8 text", ErrSyntax))
	}
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(line) > MaxLine {
			return fail(i+1, "", fmt.Errorf("%w: line longer than %d bytes (write a long list one - item a line)", ErrSyntax, MaxLine))
		}
	}
	body, err := parseYAML(data)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			return fail(tokenLine(ye.GetToken()), "", fmt.Errorf("%w: %s", ErrSyntax, oneLine(ye.GetMessage())))
		}
		return fail(0, "", fmt.Errorf("%w: %s", ErrSyntax, oneLine(err.Error())))
	}
	file := &File{Path: path}
	if body == nil { // empty, or only comments
		return file, nil
	}
	m, ok := body.(*ast.MappingNode)
	if !ok {
		return fail(nodeLine(body), "", fmt.Errorf("%w: want a mapping of option: value, got %s", ErrSyntax, describe(body)))
	}
	seen := make(map[string]int, len(m.Values))
	for _, mv := range m.Values {
		line := nodeLine(mv.Key)
		if line == 0 {
			line = nodeLine(mv)
		}
		key, ok := keyName(mv.Key)
		kind, known := schema.Options[key]
		if !ok || !known {
			return fail(line, key, fmt.Errorf("%w %q (%s)", ErrUnknownKey, key, schema.hint(key)))
		}
		if prev, dup := seen[key]; dup {
			return fail(line, key, fmt.Errorf("%w: key %q is already set on line %d", ErrSyntax, key, prev))
		}
		seen[key] = line
		values, err := convert(kind, mv.Value)
		if err != nil {
			return fail(line, key, fmt.Errorf("key %q: %w", key, err))
		}
		file.Settings = append(file.Settings, Setting{Key: key, Line: line, Values: values})
	}
	return file, nil
}

// parseYAML returns the body of the single document in data, nil for an empty file.
func parseYAML(data []byte) (body ast.Node, err error) {
	tokens := lexer.Tokenize(string(data))
	if err := checkNesting(tokens); err != nil {
		return nil, err
	}
	f, err := parser.Parse(tokens, 0)
	if err != nil {
		return nil, err
	}
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			return nil, &yaml.SyntaxError{Message: "a second YAML document (---): want one mapping of option: value", Token: doc.Body.GetToken()}
		}
		body = doc.Body
	}
	return body, nil
}

// maxNesting bounds how deep lists and mappings nest. A config needs two levels (the mapping
// of options, a list); the YAML parser takes time and memory quadratic in the depth.
const maxNesting = 16

// checkNesting refuses tokens nested deeper than maxNesting, counting the open flow
// collections ([ and {) and the block collections opened on one line (- and ?). Deeper
// block nesting needs indentation, which MaxSize bounds.
func checkNesting(tokens token.Tokens) error {
	flow, block, line := 0, 0, 0
	for _, tk := range tokens {
		if l := tokenLine(tk); l != line {
			line, block = l, 0
		}
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			flow = max(flow-1, 0)
		case token.SequenceEntryType, token.MappingKeyType:
			block++
		}
		if flow+block > maxNesting {
			return &yaml.SyntaxError{Message: fmt.Sprintf("lists and mappings nested more than %d deep", maxNesting), Token: tk}
		}
	}
	return nil
}

// keyName is the option name of a mapping key; ok is false for keys that cannot name an
// option (merge keys, complex keys), whose name is then their text.
func keyName(n ast.MapKeyNode) (name string, ok bool) {
	if s, isString := n.(*ast.StringNode); isString {
		return s.Value, true
	}
	if n == nil {
		return "", false
	}
	return n.String(), false
}

// convert checks the value node v against kind and returns the flag value texts.
func convert(kind Kind, v ast.Node) ([]string, error) {
	if kind == List {
		if seq, ok := v.(*ast.SequenceNode); ok {
			values := make([]string, 0, len(seq.Values))
			for _, el := range seq.Values {
				s, ok := scalar(el)
				if !ok {
					return nil, fmt.Errorf("%w: want a list of strings, got %s in the list", ErrType, describe(el))
				}
				values = append(values, s)
			}
			return values, nil
		}
	}
	s, ok := scalar(v)
	if !ok {
		return nil, fmt.Errorf("%w: want %s, got %s", ErrType, kind.want(), describe(v))
	}
	// As the flag package parses the flags of these kinds.
	switch kind {
	case Bool:
		if _, err := strconv.ParseBool(s); err != nil {
			return nil, fmt.Errorf("%w: %q: want %s", ErrValue, s, kind.want())
		}
	case Int:
		if _, err := strconv.ParseInt(s, 0, strconv.IntSize); err != nil {
			return nil, fmt.Errorf("%w: %q: want %s", ErrValue, s, kind.want())
		}
	case Duration:
		if _, err := time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("%w: %q: want %s", ErrValue, s, kind.want())
		}
	}
	return []string{s}, nil
}

// scalar returns the flag value text of a scalar node: a string's value, and the source text
// of numbers and booleans (0x10 stays 0x10, 1.10 stays 1.10). Null, lists, mappings,
// anchors, aliases and tags are not scalars here.
func scalar(n ast.Node) (string, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.LiteralNode:
		if n.Value == nil {
			return "", true
		}
		return n.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		if tk := n.GetToken(); tk != nil {
			return tk.Value, true
		}
	}
	return "", false
}

// describe names the YAML type of n for error messages.
func describe(n ast.Node) string {
	switch n.(type) {
	case nil, *ast.NullNode:
		return "no value (remove the key to use the default)"
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.AnchorNode, *ast.AliasNode:
		return "an anchor or alias (not supported)"
	case *ast.TagNode:
		return "a tagged value (not supported)"
	}
	return "a " + n.Type().String()
}

// hint helps with an unknown key: the closest option, and every option.
func (s Schema) hint(key string) string {
	names := make([]string, 0, len(s.Options))
	for name := range s.Options {
		names = append(names, name)
	}
	slices.Sort(names)
	hint := fmt.Sprintf("%s options: %s", s.Command, strings.Join(names, ", "))
	best, bestDist := "", 3 // suggest only close misspellings
	for _, name := range names {
		if d := distance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best != "" {
		hint = fmt.Sprintf("did you mean %q? %s", best, hint)
	}
	return hint
}

// distance is the Levenshtein distance of a and b, capped for long keys.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func nodeLine(n ast.Node) int {
	if n == nil {
		return 0
	}
	return tokenLine(n.GetToken())
}

func tokenLine(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

// oneLine keeps an error one line long, as the CLI prints it.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
