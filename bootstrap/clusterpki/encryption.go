package clusterpki

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// EncryptionKeySize is the size of a secrets encryption key (secretbox and aescbc-256).
const EncryptionKeySize = 32

// FirstEncryptionKeyName is the name of a cluster's first encryption key; each rotation counts
// up (key-2, key-3, ...). The name is written before every value the key encrypts in etcd
// (k8s:enc:secretbox:v1:key-2:...), which is how kube-apiserver picks the key to decrypt with.
const FirstEncryptionKeyName = "key-1"

// EncryptionKey is one named secrets-at-rest key.
type EncryptionKey struct {
	Name   string
	Secret []byte
}

// EncryptionKeys is a cluster's set of secrets-at-rest keys, and where a rotation of them stands.
//
// A rotation goes through three sets, each served by every kube-apiserver before the next one is
// written (an API server must be able to read whatever another one writes):
//
//	steady     {Write: old}                 the old key encrypts and decrypts
//	adding     {Write: old, Next: new}      new is known everywhere, not used yet   (Begin)
//	rewriting  {Write: new, Retired: old}   new encrypts; every Secret is rewritten (Promote)
//	steady     {Write: new}                 old is gone                             (Retire)
//
// Retire comes only after every Secret in etcd was found encrypted with new: dropping old
// earlier would leave Secrets nobody can read.
type EncryptionKeys struct {
	// Write encrypts every new write. Its Secret is nil when no key was issued yet.
	Write EncryptionKey
	// Next is a key being added: API servers decrypt with it, nothing encrypts with it yet.
	Next *EncryptionKey
	// Retired is the former Write key, kept to decrypt what it wrote until that is rewritten.
	Retired *EncryptionKey
	// Request is the rotation request (basalt.dev/rotate-encryption-key) the set answers, empty
	// when it answers none.
	Request string
}

// EncryptionPhase is where a rotation of EncryptionKeys stands.
type EncryptionPhase string

// The phases, from the key set alone.
const (
	// EncryptionSteady: one key.
	EncryptionSteady EncryptionPhase = "Steady"
	// EncryptionAdding: a new key is being handed to the API servers, read-only.
	EncryptionAdding EncryptionPhase = "AddingKey"
	// EncryptionRewriting: the new key encrypts; Secrets written with the retired one are being
	// rewritten.
	EncryptionRewriting EncryptionPhase = "Rewriting"
)

// Phase says where the set stands.
func (k EncryptionKeys) Phase() EncryptionPhase {
	switch {
	case k.Next != nil:
		return EncryptionAdding
	case k.Retired != nil:
		return EncryptionRewriting
	}
	return EncryptionSteady
}

// Ordered is the set as kube-apiserver's EncryptionConfiguration lists it: the write key first,
// then the one only read (Next or Retired).
func (k EncryptionKeys) Ordered() []EncryptionKey {
	out := []EncryptionKey{k.Write}
	if k.Next != nil {
		out = append(out, *k.Next)
	}
	if k.Retired != nil {
		out = append(out, *k.Retired)
	}
	return out
}

// Validate checks a stored set: 32-byte keys, distinct names of the form key-N, never both Next
// and Retired. A set that fails is never replaced (that would make Secrets unreadable); the
// error says what is wrong.
func (k EncryptionKeys) Validate() error {
	var errs []error
	names := map[string]bool{}
	for _, key := range k.Ordered() {
		if len(key.Secret) != EncryptionKeySize {
			errs = append(errs, fmt.Errorf("encryption key %s: %d bytes stored, want %d", key.Name, len(key.Secret), EncryptionKeySize))
		}
		if _, err := keyNumber(key.Name); err != nil {
			errs = append(errs, err)
		}
		if names[key.Name] {
			errs = append(errs, fmt.Errorf("encryption key name %s is stored twice", key.Name))
		}
		names[key.Name] = true
	}
	if k.Next != nil && k.Retired != nil {
		errs = append(errs, errors.New("encryption keys: a next and a retired key are both stored"))
	}
	if k.Next != nil && bytes.Equal(k.Next.Secret, k.Write.Secret) {
		errs = append(errs, errors.New("encryption keys: the next key is the current one"))
	}
	return errors.Join(errs...)
}

// EnsureEncryptionKeys returns the stored set when it has a write key (validated), or a new set
// with one random key, key-1 (changed true). A stored set that is not valid is an error:
// replacing it would make every Secret in etcd unreadable.
func EnsureEncryptionKeys(stored EncryptionKeys) (EncryptionKeys, bool, error) {
	if len(stored.Write.Secret) > 0 || stored.Next != nil || stored.Retired != nil {
		if err := stored.Validate(); err != nil {
			return EncryptionKeys{}, false, fmt.Errorf("clusterpki: %w", err)
		}
		return stored, false, nil
	}
	secret, err := newEncryptionSecret()
	if err != nil {
		return EncryptionKeys{}, false, err
	}
	return EncryptionKeys{Write: EncryptionKey{Name: FirstEncryptionKeyName, Secret: secret}}, true, nil
}

// Begin starts a rotation for request from a steady set: a new random key, named after the
// current one's successor, added read-only.
func (k EncryptionKeys) Begin(request string) (EncryptionKeys, error) {
	if k.Phase() != EncryptionSteady {
		return k, fmt.Errorf("clusterpki: a rotation is in progress (%s)", k.Phase())
	}
	n, err := keyNumber(k.Write.Name)
	if err != nil {
		return k, err
	}
	secret, err := newEncryptionSecret()
	if err != nil {
		return k, err
	}
	return EncryptionKeys{Write: k.Write, Next: &EncryptionKey{Name: "key-" + strconv.Itoa(n+1), Secret: secret}, Request: request}, nil
}

// Promote makes the added key the write key and keeps the former one to read (adding →
// rewriting).
func (k EncryptionKeys) Promote() (EncryptionKeys, error) {
	if k.Phase() != EncryptionAdding {
		return k, fmt.Errorf("clusterpki: no key is being added (%s)", k.Phase())
	}
	old := k.Write
	return EncryptionKeys{Write: *k.Next, Retired: &old, Request: k.Request}, nil
}

// Retire drops the retired key (rewriting → steady). Call it only once nothing in etcd is
// encrypted with it.
func (k EncryptionKeys) Retire() (EncryptionKeys, error) {
	if k.Phase() != EncryptionRewriting {
		return k, fmt.Errorf("clusterpki: no key is being retired (%s)", k.Phase())
	}
	return EncryptionKeys{Write: k.Write, Request: k.Request}, nil
}

var keyNameRE = regexp.MustCompile(`^key-([1-9][0-9]{0,8})$`)

// keyNumber is N of a key named key-N.
func keyNumber(name string) (int, error) {
	m := keyNameRE.FindStringSubmatch(name)
	if m == nil {
		return 0, fmt.Errorf("encryption key name %q is not key-N", name)
	}
	return strconv.Atoi(m[1])
}

func newEncryptionSecret() ([]byte, error) {
	k := make([]byte, EncryptionKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("clusterpki: encryption key: %w", err)
	}
	return k, nil
}
