package addons

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Bounds on what one add-on may hold. A ConfigMap or Secret holds at most 1 MiB anyway; the
// object count bounds the work of one apply and the size of status.addons[].objects.
const (
	MaxBytes   = 1 << 20
	MaxObjects = 256
)

// Source is one named document stream of an add-on: a ConfigMap or Secret data key and its value.
type Source struct {
	Key  string
	Data []byte
}

// Decode reads every object of the sources, in the order given (callers sort the keys), and
// checks that each names an apiVersion, a kind and a valid name, and that none appears twice.
// Empty documents and comments are skipped; a List kind is refused (name each object instead).
// Errors name the key and the document's position, so a user can find what to fix.
func Decode(sources []Source) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	total := 0
	seen := map[string]string{}
	for _, src := range sources {
		total += len(src.Data)
		if total > MaxBytes {
			return nil, fmt.Errorf("the manifests hold more than %d bytes", MaxBytes)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(src.Data), 4096)
		for doc := 1; ; doc++ {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s, document %d: %w", src.Key, doc, err)
			}
			if len(m) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			if err := check(u); err != nil {
				return nil, fmt.Errorf("%s, document %d: %w", src.Key, doc, err)
			}
			id := ObjectID(u)
			if where, dup := seen[id]; dup {
				return nil, fmt.Errorf("%s, document %d: %s is also in %s", src.Key, doc, id, where)
			}
			seen[id] = fmt.Sprintf("%s, document %d", src.Key, doc)
			if len(objs) == MaxObjects {
				return nil, fmt.Errorf("the manifests hold more than %d objects", MaxObjects)
			}
			objs = append(objs, u)
		}
	}
	return objs, nil
}

func check(u *unstructured.Unstructured) error {
	if u.GetAPIVersion() == "" || u.GetKind() == "" {
		return errors.New("an object needs apiVersion and kind")
	}
	if u.IsList() {
		return fmt.Errorf("%s is a list: write its items as documents of their own", u.GetKind())
	}
	if u.GetName() == "" || u.GetGenerateName() != "" {
		return fmt.Errorf("%s needs metadata.name (generateName cannot be applied twice)", u.GetKind())
	}
	// The API server checks each kind's own name rules; this keeps out names no kind accepts.
	if errs := content.IsPathSegmentName(u.GetName()); len(errs) > 0 || len(u.GetName()) > 253 {
		return fmt.Errorf("%s name %q is not a valid object name", u.GetKind(), u.GetName())
	}
	if ns := u.GetNamespace(); ns != "" {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("%s %s namespace %q: %s", u.GetKind(), u.GetName(), ns, errs[0])
		}
	}
	if rv := u.GetResourceVersion(); rv != "" {
		return fmt.Errorf("%s %s sets metadata.resourceVersion: remove it (server-side apply sets it)", u.GetKind(), u.GetName())
	}
	return nil
}

// ObjectID names an object as apiVersion/Kind/namespace/name (namespace empty when not set).
func ObjectID(u *unstructured.Unstructured) string {
	return u.GetAPIVersion() + "/" + u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// Revision is a digest of the objects, in order: the same manifests give the same revision.
func Revision(objs []*unstructured.Unstructured) string {
	h := sha256.New()
	for _, u := range objs {
		b, err := json.Marshal(u.Object) // map keys are sorted: stable
		if err != nil {
			b = []byte(ObjectID(u))
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// SortedKeys returns the keys of data in order, the order an add-on's sources are applied in.
func SortedKeys[V any](data map[string]V) []string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
