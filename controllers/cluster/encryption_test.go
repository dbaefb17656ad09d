package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/controllers/access"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/test/envtest"
)

// TestEncryptionKeyRotationWaitsForEveryServer: basalt.dev/rotate-encryption-key issues key-2
// read-only into the PKI Secret and the control-plane Plan, and says so in status; the rotation
// then waits for the control-plane API server to report that configuration loaded (the test API
// server reports none) and never promotes the key without it. The same value again asks
// nothing; a lost status is rebuilt from the stored keys.
func TestEncryptionKeyRotationWaitsForEveryServer(t *testing.T) {
	ctx := context.Background()
	ns, c, ready := readyCluster(t, "enc")
	if e := ready.Status.Encryption; e == nil || e.KeyName != "key-1" || strings.Join(e.Keys, ",") != "key-1" || e.Rotation != nil {
		t.Fatalf("status.encryption of a new Cluster: %+v", e)
	}
	cp, _, err := clusterMachines(ctx, ns, "enc")
	if err != nil {
		t.Fatal(err)
	}
	const encConfig = "/etc/basalt/kube-apiserver/encryption-config.yaml"

	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Annotations = map[string]string{basaltv1.AnnotationRotateEncryptionKey: "r1"}
	})
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		e := got.Status.Encryption
		if e == nil || e.Rotation == nil || e.Rotation.Request != "r1" || e.Rotation.Phase != basaltv1.EncryptionPhaseAddingKey ||
			strings.Join(e.Keys, ",") != "key-1,key-2" || e.KeyName != "key-1" {
			return fmt.Errorf("status.encryption %+v", e)
		}
		if !strings.Contains(e.Rotation.Message, cp[0].Name) || !strings.Contains(e.Rotation.Message, "no encryption configuration reported") {
			return fmt.Errorf("the message does not name the waiting API server: %s", e.Rotation.Message)
		}
		p, _, err := storedPlan(ctx, &cp[0])
		if err != nil {
			return err
		}
		if cfg := string(fileOf(p, encConfig)); !strings.Contains(cfg, "key-2") || strings.Index(cfg, "key-1") > strings.Index(cfg, "key-2") {
			return fmt.Errorf("the control-plane Plan's encryption configuration does not add key-2 after key-1:\n%s", cfg)
		}
		return nil
	})
	data := pkiData(t, ns, "enc-pki")
	if string(data[pkisecrets.EncryptionNextKey+pkisecrets.NameSuffix]) != "key-2" || len(data[pkisecrets.EncryptionNextKey]) != 32 ||
		string(data[pkisecrets.EncryptionRequestKey]) != "r1" || len(data[pkisecrets.EncryptionRetiredKey]) > 0 {
		t.Fatalf("PKI Secret keys during the rotation: %v", keysOf(data))
	}
	next := string(data[pkisecrets.EncryptionNextKey])

	// Past a few of the rotation's polls (15 s): still waiting, the same key-2, never promoted.
	time.Sleep(35 * time.Second)
	data = pkiData(t, ns, "enc-pki")
	if string(data[pkisecrets.EncryptionNextKey]) != next || len(data[pkisecrets.EncryptionRetiredKey]) > 0 || string(data[pkisecrets.EncryptionKeyKey+pkisecrets.NameSuffix]) != "key-1" {
		t.Fatalf("the key set moved without an API server reporting it loaded: %v", keysOf(data))
	}

	// A lost status is rebuilt from the stored keys.
	got, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	got.Status.Encryption = nil
	if err := env.Client.Status().Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	touch(t, c)
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if e := got.Status.Encryption; e == nil || e.Rotation == nil || e.Rotation.Request != "r1" || e.Rotation.Phase != basaltv1.EncryptionPhaseAddingKey {
			return fmt.Errorf("status.encryption %+v", got.Status.Encryption)
		}
		return nil
	})
	if got := pkiData(t, ns, "enc-pki"); string(got[pkisecrets.EncryptionNextKey]) != next {
		t.Error("rebuilding the status issued another key")
	}
}

// TestAdminAccessIsSignedByTheManager: a revocable administrator kubeconfig requested through the
// workload cluster's CSR API (access.GrantAccess, as basaltctl get kubeconfig --user does) is
// signed by the Cluster controller with the cluster's CA once basalt.dev/admin-access-requested
// changes.
func TestAdminAccessIsSignedByTheManager(t *testing.T) {
	ctx := context.Background()
	ns, c, _ := readyCluster(t, "acc")
	nudge := func(context.Context) error {
		updateCluster(t, c, func(c *basaltv1.Cluster) {
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations[basaltv1.AnnotationAdminAccessRequested] = time.Now().Format(time.RFC3339Nano)
		})
		return nil
	}
	g, err := access.GrantAccess(ctx, env.Config, "acc", "ops", access.MinTTL, nudge)
	if err != nil {
		t.Fatal(err)
	}
	info, err := kubeconfig.Parse(g.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertificate(pkiData(t, ns, "acc-pki")["ca.crt"])
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertificate(info.ClientCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil || cert.Subject.CommonName != g.User || len(cert.Subject.Organization) > 0 {
		t.Fatalf("the granted certificate (CN %s, O %v) is not the grant's, signed by the Cluster's CA: %v", cert.Subject.CommonName, cert.Subject.Organization, err)
	}
}

// readyCluster brings up a Cluster of one control-plane and one worker Machine on two Hosts in
// a new namespace, with the controllers and simulated agents, and waits until it is Ready.
func readyCluster(t *testing.T, name string) (string, *basaltv1.Cluster, *basaltv1.Cluster) {
	t.Helper()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.2.10", inspected: true})
	createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.2.20", inspected: true})
	c := newCluster(ns, name, 1, 1)
	if err := env.Client.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return ns, c, waitClusterReady(t, c, wait)
}
