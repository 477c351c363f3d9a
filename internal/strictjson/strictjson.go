// Package strictjson decodes the JSON objects snapcrypt keeps in a
// repository (the config, snapshot manifests, the keyring, leases, shard
// done markers) by one rule, so that no decoder is laxer than another.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// Decode decodes b into v, a pointer to a struct. b must hold exactly one
// JSON object and nothing else but white space: a value that is not an
// object (null included), a field that v's type does not have (at any
// depth), or anything after the object is an error. The error does not
// quote b.
func Decode(b []byte, v any) error {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}
