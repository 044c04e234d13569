package parquet

import (
	"errors"
	"fmt"

	pq "github.com/parquet-go/parquet-go"
)

// table is a parsed response laid out for the Parquet writer.
type table struct {
	schema *pq.Schema
	rows   []pq.Row
}

// orderedGroup is a parquet.Group whose fields keep the order we give them. parquet.Group sorts its fields
// by name, which would scatter the dimension, Week and metric columns alphabetically; readers show
// columns in file order, so we keep the contract's order instead. GoType (inherited: alphabetical, and it
// panics on a name with a comma) serves only reads and writes of Go structs, never the parquet.Row
// values written here, so any metric name works.
type orderedGroup struct {
	pq.Group
	fields []pq.Field
}

func (g orderedGroup) Fields() []pq.Field { return g.fields }

func newOrderedGroup(names []string, nodes []pq.Node) (orderedGroup, error) {
	g := make(pq.Group, len(names))
	for i, name := range names {
		if name == "" {
			return orderedGroup{}, errors.New("empty column name")
		}
		if _, dup := g[name]; dup {
			return orderedGroup{}, fmt.Errorf("column %q appears twice (dimensions, %q, metrics and %q must be distinct)", name, WeekColumn, OrganizationColumn)
		}
		g[name] = nodes[i]
	}
	byName := make(map[string]pq.Field, len(names))
	for _, f := range g.Fields() {
		byName[f.Name()] = f
	}
	fields := make([]pq.Field, len(names))
	for i, name := range names {
		fields[i] = byName[name]
	}
	return orderedGroup{Group: g, fields: fields}, nil
}

func (r *response) table(opts Options) (*table, error) {
	dims := opts.Dimensions
	ncols := len(dims) + 1 + len(r.metrics) + 1
	names := make([]string, 0, ncols)
	nodes := make([]pq.Node, 0, ncols)
	for _, d := range dims {
		names, nodes = append(names, d), append(nodes, pq.String())
	}
	names, nodes = append(names, WeekColumn), append(nodes, pq.Date())
	for _, m := range r.metrics {
		names, nodes = append(names, m), append(nodes, pq.Optional(pq.Leaf(pq.DoubleType)))
	}
	names, nodes = append(names, OrganizationColumn), append(nodes, pq.String())
	root, err := newOrderedGroup(names, nodes)
	if err != nil {
		return nil, err
	}

	total := 0
	for _, g := range r.groups {
		total += len(g.rows)
	}
	// One backing array for every value; each row is a full-capacity slice of it.
	buf := make([]pq.Value, total*ncols)
	rows := make([]pq.Row, 0, total)
	org := []byte(r.orgID)
	weekCol, firstMetric := len(dims), len(dims)+1
	for _, g := range r.groups {
		var keyDims [][]byte // resolved from the key only when a row does not carry its dimensions
		for _, wr := range g.rows {
			row := pq.Row(buf[:ncols:ncols])
			buf = buf[ncols:]
			if wr.dims != nil {
				for i, v := range wr.dims {
					row[i] = pq.ByteArrayValue([]byte(v)).Level(0, 0, i)
				}
			} else {
				if keyDims == nil {
					vals, err := dimsOf(g.key, opts)
					if err != nil {
						return nil, err
					}
					keyDims = make([][]byte, len(vals))
					for i, v := range vals {
						keyDims[i] = []byte(v)
					}
				}
				for i, v := range keyDims {
					row[i] = pq.ByteArrayValue(v).Level(0, 0, i)
				}
			}
			row[weekCol] = pq.Int32Value(wr.days).Level(0, 0, weekCol)
			for mi := range r.metrics {
				col := firstMetric + mi
				if mi < len(wr.set) && wr.set[mi] {
					// Definition level 1: the optional value is present.
					row[col] = pq.DoubleValue(wr.vals[mi]).Level(0, 1, col)
				} else {
					row[col] = pq.NullValue().Level(0, 0, col)
				}
			}
			row[ncols-1] = pq.ByteArrayValue(org).Level(0, 0, ncols-1)
			rows = append(rows, row)
		}
	}
	return &table{schema: pq.NewSchema("rollup", root), rows: rows}, nil
}
