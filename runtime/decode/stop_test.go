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

// FuzzStopper checks the stopper's contract on arbitrary text cut into arbitrary pieces.
// Generation stops at the first stop string to complete, so with no stop in the text
// everything is released; otherwise the released text is a prefix that contains no stop,
// is followed in the text by a stop string, and that stop string ends within the piece in
// which the earliest-ending occurrence of any stop string ends.
func FuzzStopper(f *testing.F) {
	f.Add("ab\ncd\n\nef", "\n\n", "x", uint64(0x0123456789))
	f.Add("func main() {}", "}", "func", uint64(7))
	f.Add("aaaa", "aa", "", uint64(1))
	f.Add("0100", "1", "0100", uint64(7))
	f.Fuzz(func(t *testing.T, text, stop1, stop2 string, cuts uint64) {
		stops := []string{stop1, stop2}
		firstEnd := -1 // where the earliest-ending stop occurrence ends
		for _, st := range stops {
			if st == "" {
				continue
			}
			if i := strings.Index(text, st); i >= 0 && (firstEnd < 0 || i+len(st) < firstEnd) {
				firstEnd = i + len(st)
			}
		}
		s := stopper{stops: stops}
		var got strings.Builder
		found, pieceEnd, fed := false, -1, 0
		for rest := text; rest != "" && !found; {
			n := min(1+int(cuts%5), len(rest)) // pieces of 1 to 5 bytes
			cuts = cuts/5 + uint64(len(rest))
			out, ok := s.push(rest[:n])
			rest, fed = rest[n:], fed+n
			got.WriteString(out)
			found = ok
			if firstEnd >= 0 && pieceEnd < 0 && fed >= firstEnd {
				pieceEnd = fed
			}
			for _, stop := range stops {
				if stop != "" && strings.Contains(got.String(), stop) {
					t.Fatalf("released %q contains the stop %q", got.String(), stop)
				}
			}
		}
		if !found {
			got.WriteString(s.flush())
		}
		released := got.String()
		if firstEnd < 0 {
			if found || released != text {
				t.Fatalf("text %q without stops %q: released %q (found %v)", text, stops, released, found)
			}
			return
		}
		if !found || !strings.HasPrefix(text, released) {
			t.Fatalf("text %q stops %q: released %q (found %v)", text, stops, released, found)
		}
		ok := false
		for _, st := range stops {
			if st != "" && strings.HasPrefix(text[len(released):], st) && len(released)+len(st) <= pieceEnd {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("text %q stops %q: released %q is not followed by a stop ending by byte %d", text, stops, released, pieceEnd)
		}
	})
}
