// Package s3server runs an S3-compatible object store for tests: gofakes3 serving the S3 HTTP
// protocol (what minio-go speaks: buckets, PUT with Content-MD5, listing, GET, DELETE) from
// memory on a loopback port. It checks no signatures; the bed's store of record is described in
// docs/backup.md.
package s3server

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running store with one bucket.
type Server struct {
	// Endpoint is host:port, for spec.etcd.backup.s3.endpoint (with insecure: true).
	Endpoint string
	// Bucket exists.
	Bucket  string
	backend *s3mem.Backend
	t       testing.TB
}

// Start runs a store with the bucket until the test ends.
func Start(t testing.TB, bucket string) *Server {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	return &Server{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: bucket, backend: be, t: t}
}

// Objects lists the keys in the bucket.
func (s *Server) Objects() []string {
	s.t.Helper()
	l, err := s.backend.ListBucket(s.Bucket, &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, o := range l.Contents {
		out = append(out, o.Key)
	}
	return out
}
