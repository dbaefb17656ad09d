package httpstatus

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRecorderCode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter)
		want    int
	}{
		{"nothing written", func(http.ResponseWriter) {}, http.StatusOK},
		{"body only", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, http.StatusOK},
		{"first code wins", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound); w.WriteHeader(http.StatusOK) }, http.StatusNotFound},
		{"read from", func(w http.ResponseWriter) { _, _ = w.(io.ReaderFrom).ReadFrom(strings.NewReader("x")) }, http.StatusOK},
		{"error", func(w http.ResponseWriter) { http.Error(w, "no", http.StatusBadGateway) }, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := httptest.NewRecorder()
			r := NewRecorder(inner)
			tc.handler(r)
			if r.Code() != tc.want || inner.Code != tc.want {
				t.Errorf("Code() = %d, wrapped writer got %d; want %d", r.Code(), inner.Code, tc.want)
			}
			if r.Unwrap() != inner {
				t.Error("Unwrap does not return the wrapped writer")
			}
		})
	}
}
