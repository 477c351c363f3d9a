package fs

import (
	"reflect"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// TestRepositoryReadOnly: nothing the mount can reach through Repository
// writes. No method takes or returns the store, the keychain, the index
// (which can be replaced) or the repository itself, nor any type with a
// method of the store's or the keychain's that writes.
func TestRepositoryReadOnly(t *testing.T) {
	writers := []reflect.Type{
		reflect.TypeFor[store.Store](),
		reflect.TypeFor[*keys.Keychain](),
		reflect.TypeFor[*repo.Index](),
		reflect.TypeFor[*repo.Repository](),
	}
	writeMethods := []string{"Create", "Put", "Delete", "Replace", "Drop", "AddKey", "StartRotation", "NewDEK", "TakeSnapshot"}
	var reach func(typ reflect.Type, seen map[reflect.Type]bool) string
	reach = func(typ reflect.Type, seen map[reflect.Type]bool) string {
		if seen[typ] {
			return ""
		}
		seen[typ] = true
		for _, w := range writers {
			if typ == w || (w.Kind() == reflect.Interface && typ.Kind() != reflect.Interface && typ.Implements(w)) {
				return typ.String()
			}
		}
		for _, name := range writeMethods {
			if _, ok := typ.MethodByName(name); ok {
				return typ.String() + "." + name
			}
		}
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
			return reach(typ.Elem(), seen)
		case reflect.Map:
			if s := reach(typ.Key(), seen); s != "" {
				return s
			}
			return reach(typ.Elem(), seen)
		case reflect.Struct:
			for i := range typ.NumField() {
				if f := typ.Field(i); f.IsExported() {
					if s := reach(f.Type, seen); s != "" {
						return s
					}
				}
			}
		case reflect.Func:
			for i := range typ.NumIn() {
				if s := reach(typ.In(i), seen); s != "" {
					return s
				}
			}
			for i := range typ.NumOut() {
				if s := reach(typ.Out(i), seen); s != "" {
					return s
				}
			}
		}
		return ""
	}
	it := reflect.TypeFor[Repository]()
	for i := range it.NumMethod() {
		m := it.Method(i)
		if s := reach(m.Type, map[reflect.Type]bool{}); s != "" {
			t.Errorf("Repository.%s reaches %s, which writes", m.Name, s)
		}
	}
}
