package index

import (
	"strings"
	"testing"
)

// TestDistinct checks the position check New runs, through the bitmap (positions up to
// 64 per key) and through the sort (larger ones).
func TestDistinct(t *testing.T) {
	cases := []struct {
		name  string
		order []int32
		want  string // part of the error, "" for none
	}{
		{"permutation", []int32{3, 0, 2, 1}, ""},
		{"gaps", []int32{10, 200, 7}, ""},
		{"duplicate", []int32{5, 1, 5}, "position 5 appears twice"},
		{"negative", []int32{0, -3, 2}, "negative position -3"},
		{"sparse", []int32{1 << 30, 7, 1<<30 - 1}, ""},
		{"sparse duplicate", []int32{1 << 30, 7, 1 << 30}, "position 1073741824 appears twice"},
		{"one", []int32{0}, ""},
	}
	for _, tc := range cases {
		err := distinct(tc.order)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}
