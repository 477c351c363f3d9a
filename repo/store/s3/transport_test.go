package s3

import (
	"net/http"
	"testing"
	"time"
)

// TestTransportKeepsConns: the transport keeps an idle connection for each
// of the mount's reads in flight, so that they need not dial anew.
func TestTransportKeepsConns(t *testing.T) {
	for _, secure := range []bool{false, true} {
		rt, err := transport(secure, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		tr := rt.(*http.Transport)
		if tr.MaxIdleConnsPerHost < 64 || tr.MaxIdleConns != 0 && tr.MaxIdleConns < 64 {
			t.Errorf("secure %v: MaxIdleConnsPerHost %d, MaxIdleConns %d; want at least 64", secure, tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
		}
	}
}
