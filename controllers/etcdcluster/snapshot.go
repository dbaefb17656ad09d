package etcdcluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// SnapshotInfo describes a snapshot file: what etcd streamed and what the file holds.
type SnapshotInfo struct {
	// Size of the file in bytes: the backend database and the sha256 trailer etcd appends.
	Size int64
	// SHA256 of the whole file, hex.
	SHA256 string
	// Revision is the highest revision in the snapshot's key space.
	Revision int64
	// Keys is the number of key revisions in the key space (what etcdutl snapshot status calls
	// the total keys of the "key" bucket).
	Keys int64
	// MemberID is the member that served it.
	MemberID uint64
	// Version is the etcd storage version the member reported; empty from members that do not.
	Version string
}

// ErrSnapshotCorrupt says a snapshot file failed its checks: the sha256 trailer etcd appends does
// not match the database, or the database cannot be read.
var ErrSnapshotCorrupt = errors.New("etcd snapshot is corrupt")

// Snapshot streams a snapshot of the backend of the member serving endpoint into path (created
// or truncated, fsynced), then checks it (Check) and returns what it holds. The client's other
// endpoints are not used: the snapshot comes from the member the caller chose.
func (c *EtcdClient) Snapshot(ctx context.Context, endpoint, path string) (SnapshotInfo, error) {
	ccfg := c.cfg
	ccfg.Endpoints = []string{endpoint}
	ccfg.Context = ctx
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("etcdcluster: %w", err)
	}
	defer func() { _ = cli.Close() }()
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot from %s: %w", endpoint, mapErr(err))
	}
	defer func() { _ = resp.Snapshot.Close() }()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return SnapshotInfo{}, err
	}
	_, err = io.Copy(f, resp.Snapshot)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot from %s: %w", endpoint, mapErr(err))
	}
	info, err := CheckSnapshot(path)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot from %s: %w", endpoint, err)
	}
	if resp.Header != nil {
		info.MemberID = resp.Header.MemberId
	}
	info.Version = resp.Version
	return info, nil
}

// CheckSnapshot checks a snapshot file the way etcdutl does before a restore and reads what
// `etcdutl snapshot status` reports: the last 32 bytes must be the sha256 of the bytes before
// them (the trailer etcd's Snapshot call appends), and the database must open as a bbolt file
// whose "key" bucket holds decodable key revisions. It returns the file's own sha256 as well.
func CheckSnapshot(path string) (SnapshotInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return SnapshotInfo{}, err
	}
	size := st.Size()
	// etcd's database is a whole number of 512-byte-aligned pages; the trailer makes the size
	// 32 more than a multiple of 512, which is how etcdutl tells a streamed snapshot from a
	// copied db file.
	if size < sha256.Size || size%512 != sha256.Size {
		return SnapshotInfo{}, fmt.Errorf("%w: %d bytes is not a database followed by a sha256 trailer", ErrSnapshotCorrupt, size)
	}
	db, whole := sha256.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(db, whole), io.NewSectionReader(f, 0, size-sha256.Size)); err != nil {
		return SnapshotInfo{}, err
	}
	trailer := make([]byte, sha256.Size)
	if _, err := f.ReadAt(trailer, size-sha256.Size); err != nil {
		return SnapshotInfo{}, err
	}
	whole.Write(trailer)
	if !bytes.Equal(db.Sum(nil), trailer) {
		return SnapshotInfo{}, fmt.Errorf("%w: the sha256 trailer does not match the database", ErrSnapshotCorrupt)
	}
	info := SnapshotInfo{Size: size, SHA256: hex.EncodeToString(whole.Sum(nil))}
	rev, keys, err := readKeySpace(path, nil)
	if err != nil {
		return SnapshotInfo{}, err
	}
	info.Revision, info.Keys = rev, keys
	return info, nil
}

// SnapshotKeys returns, for every user key in the snapshot at path, its value at the latest
// revision the snapshot holds (deleted keys are absent). Tests read what a snapshot kept with it.
func SnapshotKeys(path string) (map[string][]byte, error) {
	out := map[string][]byte{}
	_, _, err := readKeySpace(path, func(kv *mvccpb.KeyValue, tombstone bool) {
		if tombstone {
			delete(out, string(kv.Key))
			return
		}
		out[string(kv.Key)] = kv.Value
	})
	return out, err
}

// keyBucket is the bbolt bucket of etcd's key space: keys are revisions (8-byte main revision,
// '_', 8-byte sub revision, and a trailing 't' for a deletion), values are mvccpb.KeyValue.
var keyBucket = []byte("key")

// readKeySpace opens the database read-only and walks its key space in revision order, calling
// each (when not nil) with every key revision; it returns the highest main revision and the
// number of key revisions.
func readKeySpace(path string, each func(kv *mvccpb.KeyValue, tombstone bool)) (rev, keys int64, err error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrSnapshotCorrupt, err)
	}
	defer func() { _ = db.Close() }()
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(keyBucket)
		if b == nil {
			return fmt.Errorf("%w: no %q bucket", ErrSnapshotCorrupt, keyBucket)
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 17 && len(k) != 18 || k[8] != '_' {
				return fmt.Errorf("%w: key revision %x is malformed", ErrSnapshotCorrupt, k)
			}
			keys++
			rev = max(rev, int64(binary.BigEndian.Uint64(k[:8])))
			if each == nil {
				return nil
			}
			var kv mvccpb.KeyValue
			if err := proto.Unmarshal(v, &kv); err != nil {
				return fmt.Errorf("%w: key revision %x: %w", ErrSnapshotCorrupt, k, err)
			}
			each(&kv, len(k) == 18 && k[17] == 't')
			return nil
		})
	})
	return rev, keys, err
}
