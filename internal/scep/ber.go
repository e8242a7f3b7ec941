package scep

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// Bounds of the BER/DER structures accepted from a server. PKCS#7 as SCEP
// uses it nests about 15 deep (ContentInfo, SignedData, a certificate's
// extensions, an indefinite-length OCTET STRING in chunks) and a GetCACert
// bundle of a few certificates holds a few thousand elements.
const (
	// MaxBERDepth bounds how deeply constructed elements may nest.
	MaxBERDepth = 64
	// MaxBERElements bounds how many elements one structure may hold.
	MaxBERElements = 1 << 16
	// maxBERScan bounds the bytes pkcs7's ber2der would scan looking for
	// end-of-contents: after every element inside an indefinite-length
	// one it searches the rest of the data for the next 00 00, so 65536
	// small elements followed by a long run without 00 00 cost tens of
	// GiB of scanning (20 s of CPU for a 1 MiB answer). Real BER answers
	// scan kilobytes.
	maxBERScan = 64 << 20
)

// BERError says why a server's BER/DER structure was refused before it was
// parsed.
type BERError struct {
	// Offset is where in the data the problem was found.
	Offset int
	// Reason says what was wrong, in our words.
	Reason string
}

func (e *BERError) Error() string {
	return fmt.Sprintf("not a well-formed ASN.1 (BER/DER) structure: %s at byte %d", e.Reason, e.Offset)
}

// CheckBER walks the first BER/DER element of data, iteratively, and
// refuses it when its constructed elements nest deeper than MaxBERDepth,
// when it holds more than MaxBERElements elements, when pkcs7's search for
// end-of-contents markers would scan more than 64 MiB, or when a tag or a
// length is malformed or runs past its container. Bytes after the first
// element are not looked at, as pkcs7.Parse ignores them too.
//
// smallstep/pkcs7 converts BER to DER (ber2der) by recursion without a
// depth limit, and keeps a node per element: a 1 MiB answer of nested
// indefinite-length elements grew one goroutine's stack to 128 MiB. Every
// pkcs7.Parse of server data goes through parsePKCS7, which calls this
// first. The walk mirrors ber2der's reading where that reading is sane
// and refuses where it is not (an indefinite-length element whose first
// content is its end-of-contents, which ber2der would read as a child and
// go on reading the elements after it as its content; a child running past
// its definite-length parent), so that what passes has the nesting
// ber2der will see.
func CheckBER(data []byte) error {
	type frame struct {
		end        int // where the element's content ends, or the enclosing limit when indefinite
		indefinite bool
		children   int
	}
	stack := make([]frame, 0, 16)
	limit := func() int {
		if len(stack) == 0 {
			return len(data)
		}
		return stack[len(stack)-1].end
	}
	fail := func(at int, format string, args ...any) error {
		return &BERError{Offset: at, Reason: fmt.Sprintf(format, args...)}
	}
	pos, elements := 0, 0
	// nextEOC is the first index >= pos where 00 00 starts (len(data) when
	// none): what ber2der's search after each element of an indefinite-
	// length one finds. pos only grows, so the cursor only moves forward.
	nextEOC, scanned := -1, 0
	for {
		// Close the containers that end here.
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.indefinite {
				if top.children > 0 {
					if nextEOC < pos {
						nextEOC = pos + bytes.Index(data[pos:], []byte{0, 0})
						if nextEOC < pos {
							nextEOC = len(data)
						}
					}
					if scanned += nextEOC - pos + 2; scanned > maxBERScan {
						return fail(pos, "indefinite-length elements that would make the PKCS#7 parser scan more than %d MiB for their ends", maxBERScan>>20)
					}
				}
				if top.children > 0 && pos+2 <= top.end && data[pos] == 0 && data[pos+1] == 0 {
					pos += 2
					stack = stack[:len(stack)-1]
					continue
				}
				break
			}
			if pos == top.end {
				stack = stack[:len(stack)-1]
				continue
			}
			if pos > top.end {
				return fail(pos, "an element runs past the end of its container")
			}
			break
		}
		if len(stack) == 0 && elements > 0 {
			return nil
		}
		end := limit()
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.indefinite && top.children == 0 && pos+2 <= end && data[pos] == 0 && data[pos+1] == 0 {
				return fail(pos, "an indefinite-length element ends before any content")
			}
			top.children++
		}
		start := pos
		if pos >= end {
			if len(stack) > 0 && stack[len(stack)-1].indefinite {
				return fail(pos, "an indefinite-length element has no end-of-contents")
			}
			return fail(pos, "the data ends inside an element")
		}
		elements++
		if elements > MaxBERElements {
			return fail(start, "more than %d elements", MaxBERElements)
		}
		tag := data[pos]
		pos++
		if tag&0x1f == 0x1f {
			for n := 1; ; n++ {
				if pos >= end {
					return fail(start, "the data ends inside a tag")
				}
				if n > 4 {
					return fail(start, "a tag number longer than 4 bytes")
				}
				b := data[pos]
				pos++
				if b&0x80 == 0 {
					break
				}
			}
		}
		if pos >= end {
			return fail(start, "the data ends before a length")
		}
		constructed := tag&0x20 != 0
		l := data[pos]
		pos++
		if l == 0x80 {
			if !constructed {
				return fail(start, "a primitive element with an indefinite length")
			}
			if len(stack) >= MaxBERDepth {
				return fail(start, "elements nested more than %d deep", MaxBERDepth)
			}
			stack = append(stack, frame{end: end, indefinite: true})
			continue
		}
		length := int(l)
		if l > 0x80 {
			n := int(l & 0x7f)
			if n > 4 {
				return fail(start, "a length of %d bytes", n)
			}
			if pos+n > end {
				return fail(start, "the data ends inside a length")
			}
			if data[pos] == 0 {
				return fail(start, "a length with a leading zero byte")
			}
			length = 0
			for i := 0; i < n; i++ {
				length = length<<8 | int(data[pos])
				pos++
			}
		}
		if length < 0 || length > end-pos {
			return fail(start, "a length of %d bytes where %d remain", length, end-pos)
		}
		if !constructed {
			pos += length
			continue
		}
		if len(stack) >= MaxBERDepth {
			return fail(start, "elements nested more than %d deep", MaxBERDepth)
		}
		stack = append(stack, frame{end: pos + length})
	}
}

// parsePKCS7 is pkcs7.Parse for data a server wrote: the structure is
// walked with bounds first, and a panic of the parser is an error.
func parsePKCS7(data []byte) (p7 *pkcs7.PKCS7, err error) {
	if len(data) == 0 {
		return nil, errors.New("empty PKCS#7 structure")
	}
	if err := CheckBER(data); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("malformed PKCS#7 structure: %v", r)
		}
	}()
	return pkcs7.Parse(data)
}
