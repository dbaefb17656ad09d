package clusterpki

import (
	"bytes"
	"testing"
)

// TestEncryptionKeyRotation walks a key set through two rotations: each phase has the keys
// kube-apiserver must hold, write key first, and nothing else is allowed from it.
func TestEncryptionKeyRotation(t *testing.T) {
	k, changed, err := EnsureEncryptionKeys(EncryptionKeys{})
	if err != nil || !changed || k.Write.Name != "key-1" || len(k.Write.Secret) != EncryptionKeySize || k.Phase() != EncryptionSteady {
		t.Fatalf("new set: %+v changed %v, %v", k, changed, err)
	}
	again, changed, err := EnsureEncryptionKeys(k)
	if err != nil || changed || !bytes.Equal(again.Write.Secret, k.Write.Secret) {
		t.Fatalf("stored set not kept: changed %v, %v", changed, err)
	}
	if _, err := k.Promote(); err == nil {
		t.Error("Promote of a steady set succeeded")
	}
	if _, err := k.Retire(); err == nil {
		t.Error("Retire of a steady set succeeded")
	}
	first := k.Write
	for round, want := range []string{"key-2", "key-3"} {
		added, err := k.Begin("r" + want)
		if err != nil {
			t.Fatal(err)
		}
		if added.Phase() != EncryptionAdding || added.Request != "r"+want || added.Next.Name != want || bytes.Equal(added.Next.Secret, added.Write.Secret) {
			t.Fatalf("round %d: Begin gave %+v", round, added)
		}
		if o := keyNames(added.Ordered()); o != k.Write.Name+","+want {
			t.Errorf("round %d adding: config order %s", round, o)
		}
		if _, err := added.Begin("again"); err == nil {
			t.Errorf("round %d: Begin during a rotation succeeded", round)
		}
		if _, err := added.Retire(); err == nil {
			t.Errorf("round %d: Retire while adding succeeded", round)
		}
		if err := added.Validate(); err != nil {
			t.Errorf("round %d: %v", round, err)
		}
		promoted, err := added.Promote()
		if err != nil {
			t.Fatal(err)
		}
		if promoted.Phase() != EncryptionRewriting || promoted.Write.Name != want || promoted.Retired.Name != k.Write.Name {
			t.Fatalf("round %d: Promote gave %+v", round, promoted)
		}
		if o := keyNames(promoted.Ordered()); o != want+","+k.Write.Name {
			t.Errorf("round %d rewriting: config order %s", round, o)
		}
		done, err := promoted.Retire()
		if err != nil {
			t.Fatal(err)
		}
		if done.Phase() != EncryptionSteady || keyNames(done.Ordered()) != want || done.Request != "r"+want {
			t.Fatalf("round %d: Retire gave %+v", round, done)
		}
		k = done
	}
	if bytes.Equal(k.Write.Secret, first.Secret) {
		t.Error("two rotations kept the first key")
	}
}

// TestEncryptionKeysRefused: a stored set that is not usable is an error, never replaced.
func TestEncryptionKeysRefused(t *testing.T) {
	key := func(name string, n int) *EncryptionKey {
		return &EncryptionKey{Name: name, Secret: bytes.Repeat([]byte{1}, n)}
	}
	for name, k := range map[string]EncryptionKeys{
		"short key":        {Write: *key("key-1", 16)},
		"bad name":         {Write: *key("primary", 32)},
		"duplicate name":   {Write: *key("key-2", 32), Retired: key("key-2", 32)},
		"next and retired": {Write: *key("key-2", 32), Next: key("key-3", 32), Retired: key("key-1", 32)},
		"next is write":    {Write: *key("key-2", 32), Next: key("key-3", 32)},
		"only a next key":  {Next: key("key-3", 32)},
	} {
		if _, _, err := EnsureEncryptionKeys(k); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func keyNames(keys []EncryptionKey) string {
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ","
		}
		s += k.Name
	}
	return s
}
