package decode

import "strings"

// stopper sits between the token decoder and the caller's callback. It passes text on
// as soon as it can no longer be part of a stop string, holds back the longest tail
// that is still the beginning of one, and reports the first complete stop string.
type stopper struct {
	stops   []string
	pending string // text received but not yet released
}

// push adds text. It returns the text that is now safe to release and, when a stop
// string has appeared, found = true: then out is everything before the stop string and
// the rest (the stop string and anything after it) is dropped.
func (s *stopper) push(text string) (out string, found bool) {
	if len(s.stops) == 0 {
		return text, false
	}
	s.pending += text
	if cut := s.firstStop(); cut >= 0 {
		out, s.pending = s.pending[:cut], ""
		return out, true
	}
	keep := s.heldTail()
	out = s.pending[:len(s.pending)-keep]
	s.pending = s.pending[len(s.pending)-keep:]
	return out, false
}

// flush releases whatever is held back; generation ended without a stop string.
func (s *stopper) flush() string {
	out := s.pending
	s.pending = ""
	return out
}

// firstStop returns the byte offset of the earliest stop string in pending, or -1.
func (s *stopper) firstStop() int {
	cut := -1
	for _, stop := range s.stops {
		if stop == "" {
			continue
		}
		if i := strings.Index(s.pending, stop); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	return cut
}

// heldTail returns the length of the longest suffix of pending that is a proper prefix
// of some stop string: text that a later token could complete into a stop string.
func (s *stopper) heldTail() int {
	longest := 0
	for _, stop := range s.stops {
		for n := min(len(stop)-1, len(s.pending)); n > longest; n-- {
			if strings.HasSuffix(s.pending, stop[:n]) {
				longest = n
				break
			}
		}
	}
	return longest
}
