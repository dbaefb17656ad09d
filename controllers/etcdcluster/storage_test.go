package etcdcluster

import "testing"

func TestStorageClass(t *testing.T) {
	for in, want := range map[string]string{
		"k8s:enc:secretbox:v1:key-2:\x00\x01ciphertext:with:colons": "k8s:enc:secretbox:v1:key-2",
		"k8s:enc:aescbc:v1:key-1:abc":                               "k8s:enc:aescbc:v1:key-1",
		"k8s\x00\x0a\x0dv1\x12\x06Secret":                           Unencrypted,
		"k8s:enc:secretbox:v1":                                      Unencrypted,
		"":                                                          Unencrypted,
	} {
		if got := StorageClass([]byte(in)); got != want {
			t.Errorf("StorageClass(%q) = %q, want %q", in, got, want)
		}
	}
}
