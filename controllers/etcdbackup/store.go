package etcdbackup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// Keys of the credentials Secret (spec.etcd.backup.s3.credentialsSecret).
const (
	SecretAccessKeyID     = "accessKeyID"
	SecretSecretAccessKey = "secretAccessKey"
	SecretCA              = "ca.crt"
)

// RecordFormat is the version of the record stored next to each snapshot.
const RecordFormat = "basalt.dev/etcd-snapshot/v1"

// Object name suffixes: a snapshot is <folder><name>.db, and its record <folder><name>.json is
// written after it. A snapshot without its record is incomplete (the upload was cut) and is not
// listed; the next snapshot of the same name overwrites it.
const (
	snapshotSuffix = ".db"
	recordSuffix   = ".json"
)

// Bounds on what is read from the store.
const (
	// maxRecordBytes bounds one record.
	maxRecordBytes = 64 << 10
	// maxListed bounds the records one listing reads.
	maxListed = 2000
)

// Record is what is stored next to a snapshot: what the Cluster's status lists about it, and
// which Cluster object it came from (a Cluster re-created under the same name has another UID
// and may restore its predecessor's snapshots).
type Record struct {
	Format      string                `json:"format"`
	ClusterUID  string                `json:"clusterUID"`
	EtcdVersion string                `json:"etcdVersion,omitempty"`
	Snapshot    basaltv1.EtcdSnapshot `json:"snapshot"`
}

// Store keeps snapshot files and their records under folders.
type Store interface {
	// Put uploads the file at path as <key>.db and then rec as <key>.json.
	Put(ctx context.Context, key, path string, rec Record) error
	// List returns the records of complete snapshots under folder (at most maxListed).
	List(ctx context.Context, folder string) ([]Record, error)
	// Delete removes <key>.json, then <key>.db.
	Delete(ctx context.Context, key string) error
	// Get writes the snapshot <key>.db into w.
	Get(ctx context.Context, key string, w io.Writer) error
	// Location is the URL of <key>.db, s3://bucket/key.db.
	Location(key string) string
}

// ErrCredentials says the credentials Secret lacks a key.
var ErrCredentials = errors.New("backup credentials are incomplete")

// S3 is a Store in a bucket of an S3-compatible object store, spoken to with minio-go.
type S3 struct {
	client *minio.Client
	bucket string
}

// NewS3 returns the Store spec names, with the credentials (and CA) of sec.
func NewS3(spec basaltv1.S3Store, sec *corev1.Secret) (*S3, error) {
	ak, sk := string(sec.Data[SecretAccessKeyID]), string(sec.Data[SecretSecretAccessKey])
	if ak == "" || sk == "" {
		return nil, fmt.Errorf("%w: Secret %s needs the keys %s and %s", ErrCredentials, sec.Name, SecretAccessKeyID, SecretSecretAccessKey)
	}
	tr, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("the default HTTP transport is not an *http.Transport")
	}
	tr = tr.Clone()
	if ca := sec.Data[SecretCA]; len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("%w: %s in Secret %s is not a PEM certificate", ErrCredentials, SecretCA, sec.Name)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := minio.New(spec.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(ak, sk, ""),
		Secure:    !spec.Insecure,
		Region:    spec.Region,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %s: %w", spec.Endpoint, err)
	}
	return &S3{client: c, bucket: spec.Bucket}, nil
}

// Put implements Store. minio-go sends the file's MD5 with every part, so a body damaged on the
// way is refused by the store.
func (s *S3) Put(ctx context.Context, key, path string, rec Record) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := s.client.PutObject(ctx, s.bucket, key+snapshotSuffix, f, st.Size(), minio.PutObjectOptions{
		ContentType: "application/octet-stream", SendContentMd5: true,
		UserMetadata: map[string]string{"sha256": rec.Snapshot.SHA256},
	}); err != nil {
		return fmt.Errorf("uploading %s: %w", s.Location(key), err)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.client.PutObject(ctx, s.bucket, key+recordSuffix, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{
		ContentType: "application/json", SendContentMd5: true,
	}); err != nil {
		return fmt.Errorf("uploading the record of %s: %w", s.Location(key), err)
	}
	return nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, folder string) ([]Record, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var keys []string
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: folder, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", s.bucket, folder, obj.Err)
		}
		if strings.HasSuffix(obj.Key, recordSuffix) {
			keys = append(keys, obj.Key)
			if len(keys) > maxListed {
				return nil, fmt.Errorf("s3://%s/%s holds more than %d snapshots; delete old ones", s.bucket, folder, maxListed)
			}
		}
	}
	out := make([]Record, 0, len(keys))
	for _, k := range keys {
		rec, err := s.record(ctx, k)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue
		}
		out = append(out, *rec)
	}
	return out, nil
}

// record reads one record; nil (no error) when it is not one of Basalt's.
func (s *S3) record(ctx context.Context, key string) (*Record, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", s.bucket, key, err)
	}
	defer func() { _ = obj.Close() }()
	b, err := io.ReadAll(io.LimitReader(obj, maxRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", s.bucket, key, err)
	}
	var rec Record
	if len(b) > maxRecordBytes || json.Unmarshal(b, &rec) != nil || rec.Format != RecordFormat {
		return nil, nil
	}
	return &rec, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	for _, k := range []string{key + recordSuffix, key + snapshotSuffix} {
		if err := s.client.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}); err != nil {
			return fmt.Errorf("deleting s3://%s/%s: %w", s.bucket, k, err)
		}
	}
	return nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string, w io.Writer) error {
	obj, err := s.client.GetObject(ctx, s.bucket, key+snapshotSuffix, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.Location(key), err)
	}
	defer func() { _ = obj.Close() }()
	if _, err := io.Copy(w, obj); err != nil {
		return fmt.Errorf("reading %s: %w", s.Location(key), err)
	}
	return nil
}

// Location implements Store.
func (s *S3) Location(key string) string { return "s3://" + s.bucket + "/" + key + snapshotSuffix }

// ErrSnapshotMismatch says a snapshot read back from the store is not the one its record
// describes (size, sha256 or revision differ).
var ErrSnapshotMismatch = errors.New("snapshot in the store differs from its record")

// Fetch downloads the snapshot s of key into a new file in dir and checks it against its record
// before anything uses it: the same size and sha256, and a database with the same revision
// (etcdcluster.CheckSnapshot). It returns the file's path; the caller removes it.
func Fetch(ctx context.Context, store Store, key string, s basaltv1.EtcdSnapshot, dir string) (string, error) {
	f, err := os.CreateTemp(dir, "etcd-snapshot-*.db")
	if err != nil {
		return "", err
	}
	path := f.Name()
	fail := func(err error) (string, error) {
		_ = f.Close()
		_ = os.Remove(path)
		return "", err
	}
	h := sha256.New()
	if err := store.Get(ctx, key, io.MultiWriter(f, h)); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != s.SHA256 {
		return fail(fmt.Errorf("%w: %s has sha256 %s, its record says %s", ErrSnapshotMismatch, store.Location(key), sum, s.SHA256))
	}
	info, err := etcdcluster.CheckSnapshot(path)
	if err != nil {
		return fail(err)
	}
	if info.Size != s.Size || info.Revision != s.Revision {
		return fail(fmt.Errorf("%w: %s holds %d bytes at revision %d, its record says %d bytes at revision %d",
			ErrSnapshotMismatch, store.Location(key), info.Size, info.Revision, s.Size, s.Revision))
	}
	return path, nil
}
