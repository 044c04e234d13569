package rollup

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// genOpts shapes a generated request, like gen_requests.py's options plus the shapes only the exact
// path handles (escapes) and the ones the fast path must take in its stride (whitespace, key order,
// number forms, missing values, extra fields of every JSON type).
type genOpts struct {
	seed      uint64
	groups    int     // number of (contact type, language, centre) combinations
	hours     int     // hourly rows per group
	start     string  // first day, YYYY-MM-DD
	ts        string  // space, iso, isoz, offset, date, frac, mixed
	weekStart string  // "" omits it; "null" writes null
	nulls     float64 // probability of a null metric
	missing   float64 // probability of a metric key left out
	extra     bool    // extra fields of every JSON type
	shuffle   bool    // rows in random order
	keyOrder  bool    // keys in random order per row
	escapes   bool    // dimension values, keys and week_start written with escapes
	pretty    bool    // whitespace everywhere
	numbers   bool    // numbers in every JSON form (exponents, long digits, integers, -0)
	topOrder  bool    // weekly before the other top-level fields
}

var genMetrics = DefaultConfig().Metrics

type genRow struct {
	dims [3]string
	ts   string
	vals [8]string
}

func genRequest(o genOpts) []byte {
	rng := rand.New(rand.NewPCG(o.seed, 0x5eed))
	if o.start == "" {
		o.start = "2023-07-28"
	}
	start, err := time.Parse("2006-01-02", o.start)
	if err != nil {
		panic(err)
	}
	cts := []string{"Medical", "Billing", "Pharmacy", "Caf\u00e9 \"North\"", "Tab\there", "東京"}
	langs := []string{"English", "Spanish", "French"}
	centers := []string{"Default Center", "Überlingen", "Back\\slash"}
	org := fmt.Sprintf("%08x-2e10-44c3-856e-3477fae1fba8", rng.Uint32())
	var rows []genRow
	for g := 0; g < o.groups; g++ {
		ct := cts[g%len(cts)]
		if !o.escapes && (g%len(cts) == 3 || g%len(cts) == 4) {
			ct = fmt.Sprintf("Type%d", g)
		}
		lang := langs[(g/len(cts))%len(langs)]
		cc := centers[(g/(len(cts)*len(langs)))%len(centers)]
		if !o.escapes && cc == "Back\\slash" {
			cc = "Center " + strconv.Itoa(g)
		}
		base := 60 + rng.Float64()*120
		for h := 0; h < o.hours; h++ {
			t := start.Add(time.Duration(h) * time.Hour)
			r := genRow{dims: [3]string{ct, ct + " - " + lang, cc}, ts: genTimestamp(rng, o.ts, t)}
			vol := math.Floor(base * (0.5 + rng.Float64()))
			ab := math.Floor(vol * rng.Float64() * 0.05)
			vals := [8]float64{vol, ab, math.Round(vol/7.2*(0.9+rng.Float64()*0.2)*1e10) / 1e10,
				280 + rng.Float64()*180, math.Floor((vol - ab) * 0.85), 0.6 + rng.Float64()*0.4, 30,
				math.Floor(vol * rng.Float64() * 40)}
			for m, v := range vals {
				switch {
				case rng.Float64() < o.missing:
					r.vals[m] = "" // key left out
				case rng.Float64() < o.nulls:
					r.vals[m] = "null"
				default:
					r.vals[m] = genNumber(rng, o.numbers, v)
				}
			}
			rows = append(rows, r)
		}
	}
	if o.shuffle {
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	}

	var b bytes.Buffer
	ws := func() {
		if o.pretty {
			b.WriteString([]string{" ", "\n  ", "\t", "\r\n"}[rng.IntN(4)])
		}
	}
	str := func(s string) { b.WriteString(genString(rng, o.escapes, s)) }
	head := func() {
		ws()
		b.WriteString(`"event"`)
		ws()
		b.WriteString(`:`)
		ws()
		b.WriteString(`"rollup",`)
		ws()
		b.WriteString(`"organizationId":"` + org + `",`)
		switch o.weekStart {
		case "":
		case "null":
			b.WriteString(`"week_start":null,`)
		default:
			b.WriteString(`"week_start":`)
			str(o.weekStart)
			b.WriteString(",")
		}
		ws()
	}
	b.WriteString("{")
	if !o.topOrder {
		head()
	}
	b.WriteString(`"weekly":[`)
	for i, r := range rows {
		if i > 0 {
			b.WriteString(",")
		}
		ws()
		type kv struct{ k, v string }
		var kvs []kv
		for d, name := range DefaultConfig().Dimensions {
			kvs = append(kvs, kv{genString(rng, o.escapes && d == 0, name), genString(rng, o.escapes, r.dims[d])})
		}
		kvs = append(kvs, kv{`"Week"`, `"` + r.ts + `"`})
		for m, v := range r.vals {
			if v != "" {
				kvs = append(kvs, kv{genString(rng, o.escapes && m == 0, genMetrics[m].Name), v})
			}
		}
		if o.extra {
			kvs = append(kvs, kv{`"Interval"`, strconv.Itoa(i % 24)}, kv{`"Forecast Version"`, `"v3"`},
				kv{`"Notes"`, `{"a":[1,2.5e3,true,false,null,{"b":"c\u00e9\n"}],"d":[]}`}, kv{`"Flag"`, `true`},
				kv{`"Nothing"`, `null`})
		}
		if o.keyOrder {
			rng.Shuffle(len(kvs), func(i, j int) { kvs[i], kvs[j] = kvs[j], kvs[i] })
		}
		b.WriteString("{")
		for j, e := range kvs {
			if j > 0 {
				b.WriteString(",")
			}
			ws()
			b.WriteString(e.k)
			ws()
			b.WriteString(":")
			ws()
			b.WriteString(e.v)
			ws()
		}
		b.WriteString("}")
	}
	ws()
	b.WriteString("]")
	if o.topOrder {
		b.WriteString(",")
		head()
		b.Truncate(bytes.LastIndexByte(b.Bytes(), ','))
	}
	ws()
	b.WriteString("}")
	ws()
	return b.Bytes()
}

func genTimestamp(rng *rand.Rand, form string, t time.Time) string {
	if form == "mixed" {
		form = []string{"space", "iso", "isoz", "offset", "date", "frac", "lower"}[rng.IntN(7)]
	}
	switch form {
	case "iso":
		return t.Format("2006-01-02T15:04:05")
	case "isoz":
		return t.Format("2006-01-02T15:04:05Z")
	case "offset":
		return t.Format("2006-01-02T15:04:05") + []string{"+05:30", "-08:00", "+00:00"}[rng.IntN(3)]
	case "date":
		return t.Format("2006-01-02")
	case "frac":
		return t.Format("2006-01-02 15:04:05") + "." + strconv.Itoa(rng.IntN(1000000))
	case "lower":
		return t.Format("2006-01-02t15:04:05.000z")
	}
	return t.Format("2006-01-02 15:04:05")
}

// genNumber writes v as a JSON number, in one of the forms that decode to it when varied is set.
func genNumber(rng *rand.Rand, varied bool, v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if !varied {
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return s + ".0" // Python's 120.0
		}
		return s
	}
	switch rng.IntN(8) {
	case 0:
		return strconv.FormatFloat(v, 'e', -1, 64)
	case 1:
		return strconv.FormatFloat(v, 'E', 20, 64) // long digits: strconv.ParseFloat on the token
	case 2:
		return strconv.FormatFloat(v, 'f', 25, 64) // more than 19 significant digits
	case 3:
		return "-" + s // negative (and -0 for 0)
	case 4:
		return strconv.FormatFloat(v*1e-30, 'g', -1, 64) // tiny: outside Clinger's range
	case 5:
		return strconv.FormatFloat(v*1e25, 'f', 0, 64) // huge integers
	}
	return s
}

// genString writes s as a JSON string; with escapes, characters are escaped in varying ways.
func genString(rng *rand.Rand, escapes bool, s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		case escapes && rng.IntN(3) == 0:
			if r > 0xffff {
				r -= 0x10000
				fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		case escapes && r == '/' || escapes && rng.IntN(40) == 0 && r == ' ':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
