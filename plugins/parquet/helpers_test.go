package parquet

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Small assertion helpers, so the tests need nothing outside the standard library.

func equal(t testing.TB, want, got any, what string, args ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Errorf("%s:\n want %#v\n  got %#v", sprintf(what, args...), want, got)
	}
}

func must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", sprintf(what, args...), err)
	}
}

func errContains(t testing.TB, err error, sub string, what string, args ...any) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: want an error containing %q, got none", sprintf(what, args...), sub)
	} else if !strings.Contains(err.Error(), sub) {
		t.Errorf("%s: want an error containing %q, got %q", sprintf(what, args...), sub, err)
	}
}

func check(t testing.TB, ok bool, what string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf("%s", sprintf(what, args...))
	}
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}
