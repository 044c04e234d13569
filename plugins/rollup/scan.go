package rollup

import (
	"errors"
)

// The fast path: one pass over the request bytes straight into the (group, day) cells.
//
// It handles what producers send (gen_requests.py, the seed's producer, Python's json.dumps with its
// \uXXXX escapes): any whitespace, any top-level key order, escaped strings, numbers, nulls and
// extra fields of any JSON type. Anything else (duplicate keys, very deep nesting in an ignored field)
// and every error make it hand the request over to the exact path (errHandOver), which starts again
// from the first byte; the fast path's partial work is discarded. So the fast path must never accept a
// request the exact path refuses, nor read one differently: FuzzWeeklyRollup and TestPathsAgree
// compare the two.
//
// Per row, in the common case, there is no map lookup and no allocation:
//   - rows of one group and day start with the same bytes up to the date (keys, dimension values and
//     date, when the dimensions come first): one comparison with the previous row's start covers them;
//   - keys are predicted from the previous row's key order and checked with one comparison;
//   - dimension values are compared with the previous row's raw bytes (hourly rows of one group are
//     consecutive), so the group dictionary (a map) is consulted only when the group changes;
//   - the date part of the timestamp is compared with the last one parsed;
//   - numbers are converted from their digits in one pass (number.go), bit-identical to
//     strconv.ParseFloat, the function encoding/json uses.

// errHandOver says the fast path does not handle the request; it is never returned by Rollup.
var errHandOver = errors.New("rollup: handed over to the exact path")

// maxPredKeys bounds the key-order prediction per row (rows with more keys use the map lookup).
const maxPredKeys = 64

func (a *Aggregator) rollupFast(st *state, src []byte) ([]byte, Info, error) {
	p := a.p
	var info Info
	var (
		sawEvent, sawOrg, sawStart, sawRows bool
		eventIsString                       bool
		event, org                          []byte
		start                               = p.defaultStart
	)
	i := skipWS(src, 0)
	if i >= len(src) || src[i] != '{' {
		return nil, info, errHandOver
	}
	if i = skipWS(src, i+1); i < len(src) && src[i] == '}' {
		i++
	} else {
		for {
			if i >= len(src) || src[i] != '"' {
				return nil, info, errHandOver
			}
			key, e, ok := st.str(src, i+1, &st.keyDec)
			if !ok {
				return nil, info, errHandOver
			}
			if i = skipWS(src, e+1); i >= len(src) || src[i] != ':' {
				return nil, info, errHandOver
			}
			if i = skipWS(src, i+1); i >= len(src) {
				return nil, info, errHandOver
			}
			switch string(key) {
			case p.rowsField:
				if sawRows || src[i] != '[' {
					return nil, info, errHandOver
				}
				sawRows = true
				if i, ok = a.scanRows(st, src, i, &info.Rows); !ok {
					return nil, info, errHandOver
				}
			case "event":
				if sawEvent {
					return nil, info, errHandOver
				}
				sawEvent = true
				if src[i] == '"' {
					v, e, ok := st.str(src, i+1, &st.eventDec)
					if !ok {
						return nil, info, errHandOver
					}
					event, eventIsString, i = v, true, e+1
				} else {
					j, ok := skipValue(src, i, 0)
					if !ok {
						return nil, info, errHandOver
					}
					event, i = src[i:j], j
				}
			case "organizationId":
				if sawOrg || src[i] != '"' {
					return nil, info, errHandOver
				}
				sawOrg = true
				v, e, ok := st.str(src, i+1, &st.orgDec)
				if !ok {
					return nil, info, errHandOver
				}
				org, i = v, e+1
			case "week_start":
				if sawStart {
					return nil, info, errHandOver
				}
				sawStart = true
				switch {
				case src[i] == '"':
					v, e, ok := st.str(src, i+1, &st.scratch)
					if !ok {
						return nil, info, errHandOver
					}
					var err error
					if start, err = parseWeekStart(string(v)); err != nil {
						return nil, info, errHandOver
					}
					i = e + 1
				case hasLiteral(src, i, "null"):
					i += 4
				default:
					return nil, info, errHandOver
				}
			default:
				if i, ok = skipValue(src, i, 0); !ok {
					return nil, info, errHandOver
				}
			}
			if i = skipWS(src, i); i >= len(src) {
				return nil, info, errHandOver
			}
			if src[i] == ',' {
				i = skipWS(src, i+1)
				continue
			}
			if src[i] != '}' {
				return nil, info, errHandOver
			}
			i++
			break
		}
	}
	if skipWS(src, i) != len(src) {
		return nil, info, errHandOver
	}
	info.Event = string(event)
	if sawOrg {
		info.OrganizationID = string(org)
	}
	if !eventIsString || info.Event != "rollup" {
		info.Skipped, info.Rows = true, 0
		return nil, info, nil
	}
	if !sawOrg || !sawRows {
		return nil, info, errHandOver
	}
	info.WeekStart = weekdayNames[start]
	resp, err := a.respond(st, info.OrganizationID, start, &info)
	return resp, info, err
}

// scanRows reads the rows array at src[i] == '['.
func (a *Aggregator) scanRows(st *state, src []byte, i int, rows *int) (int, bool) {
	if i = skipWS(src, i+1); i < len(src) && src[i] == ']' {
		return i + 1, true
	}
	for {
		if *rows >= a.p.maxRows {
			return i, false
		}
		*rows++
		var ok bool
		if i, ok = a.scanRow(st, src, i, *rows); !ok {
			return i, false
		}
		if i = skipWS(src, i); i >= len(src) {
			return i, false
		}
		switch src[i] {
		case ',':
			i = skipWS(src, i+1)
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// scanRow reads one row object and folds it into its cell; stamp (the 1-based row number) marks the
// fields seen in this row, to catch duplicate keys.
func (a *Aggregator) scanRow(st *state, src []byte, i, stamp int) (int, bool) {
	p := a.p
	if i >= len(src) || src[i] != '{' {
		return i, false
	}
	nd := len(p.dims)
	has, vals, seen := st.has, st.vals, st.seen
	for s := range has {
		has[s] = false
	}
	var day int32
	changed, required, pos, done, matched := false, 0, 0, false, false
	rowStart, prefixEnd, prefixN := i, -1, 0

	// Rows of one group and day share their bytes up to the date (the keys and dimension values, when
	// they come first, as producers write them): one comparison with the previous row's prefix replaces
	// their keys, values and date. The prefix was taken from the previous row, which set prevDim, the
	// group and the date cache, so equal bytes leave all of them as they are.
	if pre := st.rowPrefix; st.prefixOK && len(src)-i > len(pre) && string(src[i:i+len(pre)]) == string(pre) {
		for _, id := range st.prefixIDs {
			seen[id] = stamp
		}
		required, pos, day, matched = len(st.prefixIDs), len(st.prefixIDs), st.prefixDay, true
		i += len(pre) // inside the time string, after its date; what is left of it is checked here
		ts, e, ok := st.str(src, i, &st.scratch)
		if !ok || checkTimeSuffix(ts) != nil {
			return i, false
		}
		if i = skipWS(src, e+1); i < len(src) && src[i] == '}' {
			i, done = i+1, true
		} else if i < len(src) && src[i] == ',' {
			i = skipWS(src, i+1)
		} else {
			return i, false
		}
	} else {
		i = skipWS(src, i+1)
	}
	for ; !done; pos++ {
		if i >= len(src) || src[i] != '"' {
			return i, false
		}
		i++
		id := fieldIgnored
		if pk := st.predicted(pos); pk != nil {
			if e := i + len(pk.raw); e < len(src) && src[e] == '"' && string(src[i:e]) == string(pk.raw) {
				id, i = pk.id, e+1
				goto colon
			}
		}
		{
			key, e, ok := st.str(src, i, &st.keyDec)
			if !ok {
				return i, false
			}
			if f, ok := p.fields[string(key)]; ok {
				id = f
			}
			st.learn(pos, src[i:e], id) // the raw bytes: escapes are compared as written
			i = e + 1
		}
	colon:
		if i < len(src) && src[i] == ':' {
			i++
		} else if i = skipWS(src, i); i < len(src) && src[i] == ':' {
			i++
		} else {
			return i, false
		}
		if i = skipWS(src, i); i >= len(src) {
			return i, false
		}
		if id >= 0 {
			if seen[id] == stamp {
				return i, false // a duplicate key: the exact path keeps the last value
			}
			seen[id] = stamp
		}
		switch {
		case id < 0:
			var ok bool
			if i, ok = skipValue(src, i, 0); !ok {
				return i, false
			}
		case id < nd:
			if src[i] != '"' {
				return i, false
			}
			i++
			// The raw bytes of a valid string end exactly where a quote follows them (their escapes are
			// complete), so equal raw bytes followed by a quote are the same value.
			prev := st.prevDim[id]
			if e := i + len(prev); e < len(src) && src[e] == '"' && string(src[i:e]) == string(prev) {
				i = e + 1
			} else {
				e, esc, ok := scanString(src, i)
				if !ok {
					return i, false
				}
				st.prevDim[id] = append(prev[:0], src[i:e]...)
				if esc {
					st.dimVal[id] = unescape(st.dimVal[id][:0], src[i:e])
				} else {
					st.dimVal[id] = append(st.dimVal[id][:0], src[i:e]...)
				}
				changed, i = true, e+1
			}
			required++
		case id == nd:
			if src[i] != '"' {
				return i, false
			}
			i++
			ts, e, ok := st.str(src, i, &st.scratch)
			if !ok {
				return i, false
			}
			// A row prefix can end after the date when only dimensions came before it and the date is
			// written without escapes.
			if required == pos && e-i >= 10 && &ts[0] == &src[i] {
				prefixEnd, prefixN = i+10, pos+1
			}
			if st.dateValid && len(ts) >= 10 && string(ts[:10]) == string(st.dateKey[:]) {
				if checkTimeSuffix(ts[10:]) != nil {
					return i, false
				}
				day = st.dateDay
			} else {
				d, err := parseTimestamp(ts)
				if err != nil {
					return i, false
				}
				copy(st.dateKey[:], ts[:10])
				st.dateDay, st.dateValid, day = d, true, d
			}
			i = e + 1
			required++
		default:
			s := id - nd - 1
			switch c := src[i]; {
			case c == 'n':
				if !hasLiteral(src, i, "null") {
					return i, false
				}
				i += 4
			case c == '-' || c-'0' <= 9:
				f, j, ok := parseNumber(src, i)
				if !ok {
					return i, false
				}
				vals[s], has[s], i = f, true, j
			default:
				return i, false
			}
		}
		if i < len(src) && src[i] == ',' {
			i = skipWS(src, i+1)
			continue
		}
		if i = skipWS(src, i); i < len(src) && src[i] == ',' {
			i = skipWS(src, i+1)
			continue
		}
		if i < len(src) && src[i] == '}' {
			i++
			break
		}
		return i, false
	}
	if required != nd+1 {
		return i, false // a dimension or the time field is missing
	}
	if !matched { // this row gives the prefix for the next one, if it has one
		st.prefixOK = prefixEnd >= 0 && prefixN <= len(st.pred)
		if st.prefixOK {
			st.prefixIDs = st.prefixIDs[:0]
			for _, pk := range st.pred[:prefixN] {
				st.prefixIDs = append(st.prefixIDs, pk.id)
			}
			st.rowPrefix = append(st.rowPrefix[:0], src[rowStart:prefixEnd]...)
			st.prefixDay = day
		}
	}
	if changed || st.curGroup < 0 {
		kb := st.keyBuf[:0]
		for d, v := range st.dimVal {
			if d > 0 {
				kb = append(kb, p.sep...)
			}
			kb = append(kb, v...)
		}
		st.keyBuf = kb
		st.curGroup = st.group(kb)
	}
	p.accumulate(st.cell(st.curGroup, day), vals, has)
	return i, true
}

// predicted returns the key expected at position pos of a row, or nil.
func (st *state) predicted(pos int) *predKey {
	if pos < len(st.pred) {
		return &st.pred[pos]
	}
	return nil
}

// learn records the key met at position pos for the next row.
func (st *state) learn(pos int, key []byte, id int) {
	switch {
	case pos < len(st.pred):
		st.pred[pos].raw = append(st.pred[pos].raw[:0], key...)
		st.pred[pos].id = id
	case pos == len(st.pred) && pos < maxPredKeys:
		st.pred = append(st.pred, predKey{raw: append([]byte(nil), key...), id: id})
	}
}
