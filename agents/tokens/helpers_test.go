package tokens_test

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/basalt-dev/basalt/test/envtest"
)

func metaName(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func envtestEventually(t *testing.T, check func() error) {
	envtest.Eventually(t, 10*time.Second, check)
}
