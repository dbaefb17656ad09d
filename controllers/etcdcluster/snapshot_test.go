package etcdcluster_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// writeSnapshot writes a bbolt database laid out like etcd's (a "key" bucket of key revisions)
// followed by the sha256 trailer etcd's Snapshot call appends, and returns its path.
func writeSnapshot(t *testing.T, kvs map[int64]*mvccpb.KeyValue, tombstones map[int64]bool) string {
	t.Helper()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db")
	db, err := bolt.Open(dbPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("key"))
		if err != nil {
			return err
		}
		for rev, kv := range kvs {
			k := make([]byte, 17, 18)
			binary.BigEndian.PutUint64(k, uint64(rev))
			k[8] = '_'
			if tombstones[rev] {
				k = append(k, 't')
			}
			v, err := proto.Marshal(kv)
			if err != nil {
				return err
			}
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	path := filepath.Join(dir, "snapshot.db")
	if err := os.WriteFile(path, append(data, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckSnapshot(t *testing.T) {
	path := writeSnapshot(t, map[int64]*mvccpb.KeyValue{
		2: {Key: []byte("/a"), Value: []byte("1"), ModRevision: 2},
		3: {Key: []byte("/b"), Value: []byte("2"), ModRevision: 3},
		4: {Key: []byte("/a"), ModRevision: 4},
	}, map[int64]bool{4: true})
	info, err := etcdcluster.CheckSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 4 || info.Keys != 3 || len(info.SHA256) != 64 {
		t.Fatalf("CheckSnapshot = %+v, want revision 4, 3 key revisions and a sha256", info)
	}
	keys, err := etcdcluster.SnapshotKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || string(keys["/b"]) != "2" {
		t.Fatalf("SnapshotKeys = %q, want only /b (/a was deleted)", keys)
	}

	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"a flipped byte":     flip(good, len(good)/2),
		"a flipped trailer":  flip(good, len(good)-1),
		"no trailer":         good[:len(good)-sha256.Size],
		"cut short":          good[:len(good)-700],
		"empty":              nil,
		"a trailer and junk": append(make([]byte, 512), func() []byte { s := sha256.Sum256(make([]byte, 512)); return s[:] }()...),
	} {
		p := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := etcdcluster.CheckSnapshot(p); !errors.Is(err, etcdcluster.ErrSnapshotCorrupt) {
			t.Errorf("%s: CheckSnapshot = %v, want ErrSnapshotCorrupt", name, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0xff
	return out
}
