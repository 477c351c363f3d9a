// Package vectortest runs known-answer vector tests whose vectors are kept
// as one JSON array in a file under a package's testdata.
//
// A vector test generates the vectors from today's code, checks that the
// stored file holds exactly those (so the format stays frozen), and runs
// each stored vector through the code under test. The same file seeds the
// package's fuzzers. With the -update flag (go test -run Vectors -update)
// Run first rewrites the file from the generated vectors.
package vectortest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

var update = flag.Bool("update", false, "rewrite the known-answer vectors in testdata")

// Update reports whether the test binary runs with -update: tests that keep
// vectors in another shape rewrite them then too.
func Update() bool { return *update }

// Run is the known-answer test of the vectors in file against gen, the
// vectors today's code produces: with -update it writes gen to file first;
// it fails t if the stored vectors differ from gen, and calls check with
// each stored vector (check reports through the caller's t).
func Run[V any](t testing.TB, file string, gen []V, check func(v V)) {
	t.Helper()
	run(t, file, gen, check, *update)
}

func run[V any](t testing.TB, file string, gen []V, check func(v V), write bool) {
	t.Helper()
	if write {
		b, err := json.MarshalIndent(gen, "", "  ")
		if err != nil {
			t.Fatalf("vectors: %v", err)
		}
		if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vs := Load[V](t, file)
	if !reflect.DeepEqual(vs, gen) {
		t.Errorf("stored vectors in %s differ from what the code produces now (run with -update)", file)
	}
	for _, v := range vs {
		check(v)
	}
}

// Load returns the vectors stored in file, a JSON array of V. It fails t if
// the file is missing, does not decode (a field V does not have included)
// or holds no vector, so a fuzzer seeded from it never runs with an empty
// corpus by mistake.
func Load[V any](t testing.TB, file string) []V {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -run Vectors -update)", err)
	}
	var vs []V
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&vs); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(vs) == 0 {
		t.Fatalf("%s: no vectors", file)
	}
	return vs
}

// Outcomes of CheckParse, as vectors state them in their expect field.
const (
	OK        = "ok"        // parses, and marshals back to the stored bytes
	Corrupted = "corrupted" // fails with an error wrapping object.ErrCorrupt
)

// CheckParse runs one vector of a decoder: name is the vector's name,
// stored its bytes and expect its outcome, OK or Corrupted. It fails t if
// parse's outcome differs, if an error does not wrap object.ErrCorrupt, or
// if what parses does not marshal back to stored.
func CheckParse[T any](t testing.TB, name, expect, stored string, parse func([]byte) (T, error), marshal func(T) []byte) {
	t.Helper()
	v, err := parse([]byte(stored))
	got := OK
	if err != nil {
		if !errors.Is(err, object.ErrCorrupt) {
			t.Errorf("%s: error %v does not wrap object.ErrCorrupt", name, err)
		}
		got = Corrupted
	}
	if got != expect {
		t.Errorf("%s: got %s (%v), expect %s", name, got, err, expect)
	}
	if err == nil && string(marshal(v)) != stored {
		t.Errorf("%s: marshal does not give back the stored bytes", name)
	}
}
