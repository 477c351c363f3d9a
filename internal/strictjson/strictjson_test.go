package strictjson

import (
	"encoding/json"
	"testing"
)

type inner struct {
	N int `json:"n"`
}

type doc struct {
	A string `json:"a"`
	B *inner `json:"b"`
}

func TestDecode(t *testing.T) {
	for _, ok := range []string{`{"a":"x","b":{"n":1}}`, " \n{\"a\":\"x\"}\n\t ", `{}`} {
		var d doc
		if err := Decode([]byte(ok), &d); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	var d doc
	if err := Decode([]byte(`{"a":"x","b":{"n":7}}`), &d); err != nil || d.A != "x" || d.B == nil || d.B.N != 7 {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	for _, bad := range []string{
		``, ` `, `null`, `[]`, `"a"`, `1`, `true`,
		`{"a":"x","c":1}`,       // unknown field
		`{"a":"x","b":{"m":1}}`, // unknown nested field
		`{"a":"x"}{}`,           // a second object
		`{"a":"x"}}`,            // a stray brace
		`{"a":"x"}]`,            // a stray bracket
		`{"a":"x"} 1`,           // a second value
		`{"a":"x"}x`,            // garbage
		`{"a":"x"`,              // cut short
		`{"a":1}`,               // wrong type
	} {
		var d doc
		if err := Decode([]byte(bad), &d); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzDecode: whatever Decode accepts is one JSON object that re-encodes
// to a value Decode accepts again, unchanged.
func FuzzDecode(f *testing.F) {
	seeds := []string{`{"a":"x","b":{"n":1}}`, `{}`, `{"a":"x"}}`, `null`}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d doc
		if err := Decode(b, &d); err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		m, err := json.Marshal(&d)
		if err != nil {
			t.Fatal(err)
		}
		var d2 doc
		if err := Decode(m, &d2); err != nil {
			t.Fatalf("does not accept its own encoding %s: %v", m, err)
		}
		if m2, _ := json.Marshal(&d2); string(m2) != string(m) {
			t.Fatalf("re-encoding changed %s to %s", m, m2)
		}
	})
}
