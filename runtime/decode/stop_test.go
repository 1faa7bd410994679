package decode

import (
	"strings"
	"testing"
)

func TestStopper(t *testing.T) {
	tests := []struct {
		name   string
		stops  []string
		pieces []string
		// want lists, per piece, the text released; a final entry is the flush (or
		// nothing when a stop string was found).
		want      []string
		wantFound int // index of the piece that completes a stop string, -1 if none
	}{
		{
			name: "no stop strings passes everything", stops: nil,
			pieces: []string{"a", "b\n", "c"}, want: []string{"a", "b\n", "c", ""}, wantFound: -1,
		},
		{
			name: "stop inside one piece", stops: []string{"END"},
			pieces: []string{"ab", "cENDde"}, want: []string{"ab", "c"}, wantFound: 1,
		},
		{
			name: "stop split across pieces is held back", stops: []string{"\n\n"},
			pieces: []string{"x\n", "\ny"}, want: []string{"x", ""}, wantFound: 1,
		},
		{
			name: "held prefix released when it turns out not to be a stop", stops: []string{"</s>"},
			pieces: []string{"a<", "/", "b", "c"}, want: []string{"a", "", "</b", "c", ""}, wantFound: -1,
		},
		{
			name: "held prefix released by flush", stops: []string{"STOP"},
			pieces: []string{"xS", "T"}, want: []string{"x", "", "ST"}, wantFound: -1,
		},
		{
			name: "earliest of several stops wins", stops: []string{"bc", "ab"},
			pieces: []string{"xabc"}, want: []string{"x"}, wantFound: 0,
		},
		{
			name: "longest held prefix across stops", stops: []string{"func", "fn("},
			pieces: []string{"a fu", "nc"}, want: []string{"a ", ""}, wantFound: 1,
		},
		{
			name: "stop at the very start", stops: []string{"}"},
			pieces: []string{"}", "x"}, want: []string{""}, wantFound: 0,
		},
		{
			name: "empty stop string ignored", stops: []string{""},
			pieces: []string{"ab"}, want: []string{"ab", ""}, wantFound: -1,
		},
		{
			name: "multibyte text", stops: []string{"é!"},
			pieces: []string{"café", "!"}, want: []string{"caf", ""}, wantFound: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stopper{stops: tt.stops}
			var got []string
			found := -1
			for i, p := range tt.pieces {
				out, ok := s.push(p)
				got = append(got, out)
				if ok {
					found = i
					break
				}
			}
			if found < 0 {
				got = append(got, s.flush())
			}
			if found != tt.wantFound {
				t.Fatalf("stop found at piece %d, want %d", found, tt.wantFound)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("released %q, want %q", got, tt.want)
			}
		})
	}
}
