package etcdcluster

import (
	"bytes"
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Unencrypted is the StoragePrefixes class of values written without an encrypting provider.
const Unencrypted = "unencrypted"

// StorageScanner reads how kube-apiserver's objects are stored in etcd, which is the only way to
// know that a rotation re-encrypted them all. EtcdClient implements it.
type StorageScanner interface {
	// StoragePrefixes counts the values under keyPrefix (e.g. "/registry/secrets/") by how they
	// are stored: "k8s:enc:<provider>:v1:<key name>", the header an encrypting provider writes
	// before the ciphertext, or Unencrypted. It reads every value once, in pages, with
	// linearizable reads.
	StoragePrefixes(ctx context.Context, keyPrefix string) (map[string]int, error)
}

var _ StorageScanner = (*EtcdClient)(nil)

// storagePage is how many values one range request of StoragePrefixes returns.
const storagePage = 256

// StoragePrefixes implements StorageScanner.
func (c *EtcdClient) StoragePrefixes(ctx context.Context, keyPrefix string) (map[string]int, error) {
	if keyPrefix == "" {
		return nil, fmt.Errorf("etcdcluster: an empty key prefix would read the whole key space")
	}
	end := clientv3.GetPrefixRangeEnd(keyPrefix)
	counts := map[string]int{}
	key := keyPrefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(storagePage)}
		if rev > 0 {
			// Every page at the first page's revision: one consistent picture.
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := c.cli.Get(ctx, key, opts...)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", keyPrefix, mapErr(err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			counts[StorageClass(kv.Value)]++
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return counts, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// encryptedPrefix starts every value kube-apiserver's encrypting providers write.
var encryptedPrefix = []byte("k8s:enc:")

// StorageClass is how one stored value is written: "k8s:enc:<provider>:v1:<key name>" (the
// header up to the colon after the key name), or Unencrypted.
func StorageClass(v []byte) string {
	if !bytes.HasPrefix(v, encryptedPrefix) {
		return Unencrypted
	}
	// k8s:enc:secretbox:v1:key-2:<ciphertext>: the header ends at the fifth colon.
	colons := 0
	for i, b := range v {
		if b != ':' {
			continue
		}
		if colons++; colons == 5 {
			return string(v[:i])
		}
		if i > 256 {
			break
		}
	}
	return Unencrypted
}
