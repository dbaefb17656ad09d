// Package httpstatus remembers the status code an HTTP handler answered with, for the request
// metrics of the manager's HTTP services (the agent API and the HTTP boot server).
package httpstatus

import (
	"io"
	"net/http"
)

// Recorder wraps a ResponseWriter and remembers the first status code written. It keeps the
// wrapped writer's fast paths reachable: ReadFrom (sendfile for http.ServeContent) and Unwrap
// (http.ResponseController: write deadlines, flushing).
type Recorder struct {
	http.ResponseWriter
	status int
}

// NewRecorder wraps w.
func NewRecorder(w http.ResponseWriter) *Recorder { return &Recorder{ResponseWriter: w} }

// WriteHeader records code (the first one only) and passes it on.
func (r *Recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write records 200 when no code was written before, and passes b on.
func (r *Recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// ReadFrom keeps http.ServeContent's copy on the connection's ReadFrom (sendfile).
func (r *Recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Code is the status code answered: the first one written, 200 when the handler wrote a body
// without one, or when it wrote nothing at all (net/http then sends 200).
func (r *Recorder) Code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
