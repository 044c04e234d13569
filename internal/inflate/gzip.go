package inflate

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// Decoders are pooled: the tables are about 30 KB.
var decoders = sync.Pool{New: func() any { return new(decoder) }}

// Gunzip decompresses every member of the gzip stream src, appending the
// output to dst, and checks each member's CRC-32 and length. The output,
// including what dst held, may not exceed limit bytes (ErrTooLarge); room is
// grown by doubling, so give dst the expected capacity plus Slack to decode
// without a copy.
//
// It accepts the streams klauspost/compress/gzip accepts, with the same
// output, but for one bug of klauspost's: a dynamic block with an empty
// distance code that still sends a match is refused here and by Go's
// compress/gzip, while klauspost decodes the match with the previous block's
// distance code. (Go's compress/gzip in turn accepts reserved header flags,
// which RFC 1952, klauspost and this package refuse.) Errors are the same kinds:
// io.ErrUnexpectedEOF for a cut-off stream, gzip.ErrHeader for a bad header
// (including bytes after the last member that are not another member),
// gzip.ErrChecksum for a wrong CRC or length, flate.CorruptInputError for a
// bad DEFLATE stream; a stream both corrupt and cut short may be called
// corrupt here where they call it truncated (they wait for more bits before
// decoding a symbol).
func Gunzip(dst, src []byte, limit int) (out []byte, err error) {
	d := decoders.Get().(*decoder)
	defer func() {
		// A bug here must cost one request, not the process: the service would
		// crash on the same record again after every restart. The tests call
		// gunzip, without this, so that a panic fails them. A decoder that
		// panicked is not reused.
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("inflate: internal error (a bug; please report it with the payload): %v", r)
			return
		}
		d.in, d.out = nil, nil // drop the caller's buffers before pooling
		decoders.Put(d)
	}()
	return d.gunzip(dst, src, limit)
}

// gunzip is Gunzip with a decoder of its own.
func (d *decoder) gunzip(dst, src []byte, limit int) ([]byte, error) {
	limit = min(limit, math.MaxInt-Slack) // grow adds Slack to it
	d.in, d.pos = src, 0
	d.out, d.op, d.limit = dst[:cap(dst)], len(dst), limit
	if len(dst) > limit {
		return nil, ErrTooLarge
	}
	for member := 0; member == 0 || d.pos < len(src); member++ {
		n, err := readHeader(src[d.pos:])
		if err != nil {
			return nil, err
		}
		d.pos += n
		start := d.op
		crc, err := d.inflate()
		if err != nil {
			return nil, err
		}
		if d.pos+8 > len(src) {
			return nil, io.ErrUnexpectedEOF
		}
		if binary.LittleEndian.Uint32(src[d.pos:]) != crc ||
			binary.LittleEndian.Uint32(src[d.pos+4:]) != uint32(d.op-start) {
			return nil, gzip.ErrChecksum
		}
		d.pos += 8
	}
	return d.out[:d.op], nil
}

// Header flags (RFC 1952 section 2.3.1).
const (
	flagHdrCRC  = 1 << 1
	flagExtra   = 1 << 2
	flagName    = 1 << 3
	flagComment = 1 << 4

	maxHeaderString = 512 // file name or comment, with its terminating zero
)

// readHeader checks a member header at the start of b and returns its length.
func readHeader(b []byte) (int, error) {
	if len(b) < 10 {
		return 0, io.ErrUnexpectedEOF
	}
	if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
		return 0, gzip.ErrHeader
	}
	flg := b[3]
	n := 10
	if flg&flagExtra != 0 {
		if n+2 > len(b) {
			return 0, io.ErrUnexpectedEOF
		}
		n += 2 + int(binary.LittleEndian.Uint16(b[n:]))
		if n > len(b) {
			return 0, io.ErrUnexpectedEOF
		}
	}
	for _, f := range []byte{flagName, flagComment} {
		if flg&f == 0 {
			continue
		}
		// A zero-terminated string, refused past 512 bytes as gzip.Reader does.
		for i := 0; ; i++ {
			if i >= maxHeaderString {
				return 0, gzip.ErrHeader
			}
			if n >= len(b) {
				return 0, io.ErrUnexpectedEOF
			}
			n++
			if b[n-1] == 0 {
				break
			}
		}
	}
	if flg&flagHdrCRC != 0 {
		if n+2 > len(b) {
			return 0, io.ErrUnexpectedEOF
		}
		if binary.LittleEndian.Uint16(b[n:]) != uint16(crc32.ChecksumIEEE(b[:n])) {
			return 0, gzip.ErrHeader
		}
		n += 2
	}
	if flg>>5 != 0 { // reserved flags
		return 0, gzip.ErrHeader
	}
	return n, nil
}
