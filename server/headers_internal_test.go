package server

import (
	"net/url"
	"testing"
)

// queryParam agrees with url.ParseQuery on the first value and the count.
func TestQueryParam(t *testing.T) {
	for _, raw := range []string{
		"", "offset=5", "offset=5&offset=6", "offset=", "offset", "live=sse&offset=-1",
		"a=1&offset=%41b&live=long-poll", "off%73et=7", "offset=a+b", "offset=%zz&offset=3",
		"offset=1;live=sse&live=long-poll", "&&offset=2&", "cursor=12&cursor=x", "%zz=1&cursor=4",
		"live=long%2Dpoll", "offset=now&cursor=18446744073709551615",
	} {
		want, _ := url.ParseQuery(raw)
		for _, key := range []string{"offset", "live", "cursor"} {
			got, n := queryParam(raw, key)
			if n != len(want[key]) || want.Get(key) != got {
				t.Errorf("%q %s: got %q x%d, ParseQuery %q x%d", raw, key, got, n, want.Get(key), len(want[key]))
			}
		}
	}
}
