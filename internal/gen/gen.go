// Package gen makes realistic scenario requests, as the old team's gen_requests.py did: hourly
// contact-centre rows for each contact type, language and call centre. The demo, the end-to-end tests
// and the benchmarks use it so that they need no Python.
package gen

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Options shape a request. The zero value is not useful: start from Defaults.
type Options struct {
	Seed         uint64
	OrgID        string // empty: derived from Seed
	ContactTypes []string
	Langs        []string
	Centers      []string
	Start        time.Time
	Weeks        int
	WeekStart    string // empty: the field is omitted (service default applies)
	TSFormat     string // space (default), iso, isoz, offset, date
	Nulls        float64
}

// Defaults is a seed-sized request: 2 groups x 58 weeks x 168 hours = 19,488 rows, about 6.6 MB.
func Defaults(seed uint64) Options {
	return Options{
		Seed:         seed,
		ContactTypes: []string{"Medical"},
		Langs:        []string{"English", "Spanish"},
		Centers:      []string{"Default Center"},
		Start:        time.Date(2023, 7, 28, 0, 0, 0, 0, time.UTC),
		Weeks:        58,
		WeekStart:    "friday",
		TSFormat:     "space",
	}
}

// Large100k is the request the one-core benchmarks use: 1 x 5 x 2 groups x 60 weeks x 168 hours =
// 100,800 rows, about 34 MB of JSON.
func Large100k(seed uint64) Options {
	o := Defaults(seed)
	o.Langs = []string{"English", "Spanish", "French", "German", "Portuguese"}
	o.Centers = []string{"North", "South"}
	o.Weeks = 60
	return o
}

// Rows is how many hourly rows Request will write for o.
func (o Options) Rows() int {
	return len(o.ContactTypes) * len(o.Langs) * len(o.Centers) * o.Weeks * 168
}

// OrganizationID is the request's organizationId.
func (o Options) OrganizationID() string {
	if o.OrgID != "" {
		return o.OrgID
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff,
		0x8000|r.Uint32()&0x3fff, r.Uint64()&0xffffffffffff)
}

// Request returns the request as compact JSON.
func Request(o Options) []byte {
	r := rand.New(rand.NewPCG(o.Seed, 1))
	var b bytes.Buffer
	b.Grow(o.Rows() * 340)
	b.WriteString(`{"event":"rollup","organizationId":`)
	writeJSONString(&b, o.OrganizationID())
	if o.WeekStart != "" {
		b.WriteString(`,"week_start":`)
		writeJSONString(&b, o.WeekStart)
	}
	b.WriteString(`,"weekly":[`)
	first := true
	num := func(name string, v float64) {
		b.WriteString(`,"`)
		b.WriteString(name)
		b.WriteString(`":`)
		if o.Nulls > 0 && r.Float64() < o.Nulls {
			b.WriteString("null")
			return
		}
		b.WriteString(pyFloat(v))
	}
	for _, ct := range o.ContactTypes {
		for _, lang := range o.Langs {
			for _, cc := range o.Centers {
				base := uniform(r, 60, 180)
				for h := 0; h < o.Weeks*168; h++ {
					t := o.Start.Add(time.Duration(h) * time.Hour)
					shape := 0.05
					if hr := t.Hour(); hr >= 6 && hr < 22 {
						shape = math.Max(0.05, math.Sin(math.Pi*float64((hr-6)%24)/16))
					}
					vol := math.Trunc(base * shape * uniform(r, 0.8, 1.2))
					ab := math.Trunc(vol * uniform(r, 0, 0.05))
					fte := math.Round(vol/7.2*uniform(r, 0.9, 1.1)*1e10) / 1e10
					aht := uniform(r, 280, 460)
					handled := math.Trunc((vol - ab) * uniform(r, 0.75, 0.95))
					sl := uniform(r, 0.6, 1.0)
					qt := math.Trunc(vol * uniform(r, 0, 40))
					if !first {
						b.WriteByte(',')
					}
					first = false
					b.WriteString(`{"Contact Type":`)
					writeJSONString(&b, ct)
					b.WriteString(`,"Staff Type":`)
					writeJSONString(&b, ct+" - "+lang)
					b.WriteString(`,"Call Center":`)
					writeJSONString(&b, cc)
					b.WriteString(`,"Week":"`)
					b.WriteString(timestamp(t, o.TSFormat))
					b.WriteByte('"')
					num("Volume", vol)
					num("Abandons", ab)
					num("Top Line Agents (FTE)", fte)
					num("Base AHT", aht)
					num("Handled Threshold", handled)
					num("Service Level (X Seconds)", sl)
					num("Acceptable Wait Time", 30.0)
					num("Total Queue Time", qt)
					b.WriteByte('}')
				}
			}
		}
	}
	b.WriteString("]}")
	return b.Bytes()
}

// Encode returns base64(gzip(json)), the seed's wire format.
func Encode(js []byte) []byte {
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.DefaultCompression)
	_, _ = w.Write(js) // writes to a bytes.Buffer cannot fail
	_ = w.Close()
	out := make([]byte, base64.StdEncoding.EncodedLen(z.Len()))
	base64.StdEncoding.Encode(out, z.Bytes())
	return out
}

func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

func timestamp(t time.Time, format string) string {
	switch format {
	case "iso":
		return t.Format("2006-01-02T15:04:05")
	case "isoz":
		return t.Format("2006-01-02T15:04:05Z")
	case "offset":
		return t.Format("2006-01-02T15:04:05") + "+05:30"
	case "date":
		return t.Format("2006-01-02")
	default:
		return t.Format("2006-01-02 15:04:05")
	}
}

// pyFloat formats like Python's repr for the values the generator makes (integral values keep ".0").
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !bytes.ContainsAny([]byte(s), ".e") {
		s += ".0"
	}
	return s
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always marshals
	b.Write(enc)
}
