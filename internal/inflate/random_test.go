package inflate

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// TestRandomDynamicStreams writes gzip streams of random dynamic blocks with
// codes no encoder here would choose (long litlen and distance codewords that
// need subtables, one-symbol distance codes, few or many symbols) and checks
// the decoder against the expected output and the reference, at limits around
// the output size and cut short at many points.
func TestRandomDynamicStreams(t *testing.T) {
	lengthBase := []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra := []int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase := []int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra := func(s int) int { return max(s/2-1, 0) }

	r := rand.New(rand.NewPCG(7, 9))
	for iter := 0; iter < 1000; iter++ {
		var bw bitWriter
		var want []byte
		blocks := 1 + r.IntN(3)
		for b := 0; b < blocks; b++ {
			nlit, ndist := 257+r.IntN(30), 1+r.IntN(30)
			lit := randomCode(r, nlit, 2+r.IntN(nlit-1), 9+r.IntN(7), 256)
			dist := randomCode(r, ndist, 1+r.IntN(ndist), 1+r.IntN(15), -1)
			blk := newDynamicBlock(lit, dist)
			blk.header(&bw, b == blocks-1)
			var lits, lens, dists []int
			for s, l := range lit {
				if l > 0 && s < 256 {
					lits = append(lits, s)
				} else if l > 0 && s > 256 {
					lens = append(lens, s)
				}
			}
			for s, l := range dist {
				if l > 0 {
					dists = append(dists, s)
				}
			}
			for range r.IntN(3000) {
				if len(lens) > 0 && len(want) > 0 && r.IntN(3) == 0 {
					ls := lens[r.IntN(len(lens))]
					ds := dists[r.IntN(len(dists))]
					lx, dx := r.IntN(1<<lengthExtra[ls-257]), r.IntN(1<<distExtra(ds))
					if d := distBase[ds] + dx; d <= len(want) {
						blk.lit(&bw, ls)
						bw.write(uint32(lx), uint(lengthExtra[ls-257]))
						blk.dist(&bw, ds)
						bw.write(uint32(dx), uint(distExtra(ds)))
						for range lengthBase[ls-257] + lx {
							want = append(want, want[len(want)-d])
						}
						continue
					}
				}
				if len(lits) > 0 {
					s := lits[r.IntN(len(lits))]
					blk.lit(&bw, s)
					want = append(want, byte(s))
				}
			}
			blk.lit(&bw, 256)
		}
		src := gzipMember(bw.bytes(), want)
		if ref, err := reference(src); err != nil || !bytes.Equal(ref, want) {
			t.Fatalf("iteration %d: the reference does not decode the generated stream: %v", iter, err)
		}
		if err := agree(t, src); err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		for _, limit := range []int{len(want), len(want) - 1, len(want) / 2} {
			got, err := new(decoder).gunzip(nil, src, limit)
			switch {
			case limit >= len(want) && (err != nil || !bytes.Equal(got, want)):
				t.Fatalf("iteration %d, limit %d: %v", iter, limit, err)
			case limit < len(want) && !errors.Is(err, ErrTooLarge):
				t.Fatalf("iteration %d, limit %d of %d: %v", iter, limit, len(want), err)
			case cap(got) > limit+Slack:
				t.Fatalf("iteration %d: capacity %d over limit %d + Slack", iter, cap(got), limit)
			}
		}
		for cut := 10; cut < len(src); cut += 1 + len(src)/40 {
			err := agree(t, src[:cut])
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("iteration %d, cut at %d of %d: %v, want truncated", iter, cut, len(src), err)
			}
		}
	}
}

// randomCode returns the codeword lengths of a random complete prefix code
// with up to used codewords, none longer than maxLen, over n symbols; the
// symbol must (unless -1) is among them. It splits leaves of a code tree,
// deepest first half the time, so long codewords are common.
func randomCode(r *rand.Rand, n, used, maxLen, must int) []int {
	depths := []int{0}
	for len(depths) < used {
		var splittable []int
		deepest := -1
		for i, d := range depths {
			if d < maxLen {
				splittable = append(splittable, i)
				if deepest < 0 || d > depths[deepest] {
					deepest = i
				}
			}
		}
		if len(splittable) == 0 {
			break
		}
		i := splittable[r.IntN(len(splittable))]
		if r.IntN(2) == 0 {
			i = deepest
		}
		depths[i]++
		depths = append(depths, depths[i])
	}
	if len(depths) == 1 {
		depths[0] = 1 // a single codeword of one bit: the one incomplete code allowed
	}
	order := r.Perm(n)
	if must >= 0 {
		for k, s := range order {
			if s == must {
				order[0], order[k] = order[k], order[0]
			}
		}
	}
	lens := make([]int, n)
	for k, d := range depths {
		lens[order[k]] = d
	}
	return lens
}
