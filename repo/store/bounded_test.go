package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

func TestGetBounded(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if err := st.Create(ctx, "obj", make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		max     int64
		wantLen int
		wantErr error
	}{
		{100, 100, nil},
		{1000, 100, nil},
		{99, 0, store.ErrTooLarge},
		{0, 0, store.ErrTooLarge},
	} {
		b, err := store.GetBounded(ctx, st, "obj", c.max)
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) {
				t.Errorf("max %d: err %v, want %v", c.max, err, c.wantErr)
			}
			continue
		}
		if err != nil || len(b) != c.wantLen {
			t.Errorf("max %d: %d bytes, %v; want %d", c.max, len(b), err, c.wantLen)
		}
	}
	if _, err := store.GetBounded(ctx, st, "missing", 10); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("missing object: %v, want ErrNotExist", err)
	}
	if _, err := store.GetBounded(ctx, st, "obj", -1); err == nil {
		t.Error("negative limit accepted")
	}
}
