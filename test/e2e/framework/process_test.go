package framework

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestManagerProcessCrashAndAPIRestart runs the manager binary against a real API server: it
// takes the leader lease, a SIGKILL leaves the lease held so the restarted process takes it only
// once it expired, and a restarted kube-apiserver keeps its address, certificates and data, so the
// manager and the test's client carry on.
func TestManagerProcessCrashAndAPIRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the manager")
	}
	m := StartManagementProcess(t, StartManagementInput{Address: "127.0.0.1"})
	p := m.Process
	leads := func(n int) {
		t.Helper()
		Eventually(t, 2*time.Minute, func() error {
			got, err := p.Leads()
			if err != nil {
				return err
			}
			if got < n {
				return fmt.Errorf("the manager took the lease %d times, want %d (log %s)", got, n, p.Log)
			}
			return nil
		})
	}
	leads(1)
	killed := time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	leads(2)
	// The lease is 15 s and nothing released it: the new process waited for it to expire.
	if took := time.Since(killed); took < 5*time.Second {
		t.Fatalf("the restarted manager led %s after the kill: the killed one's lease was not held", took)
	}
	if p.Starts() != 2 {
		t.Fatalf("%d starts, want 2", p.Starts())
	}

	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-restart", Namespace: "default"}}
	if err := m.Env.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := m.Env.RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Minute, func() error {
		return m.Env.Client.Get(ctx, ObjectKey("default", "before-restart"), &corev1.ConfigMap{})
	})
	if p.Exits() > 0 {
		// Its lease renewals failed while the API server was away: it exited and was started again.
		leads(3)
	}
}
