package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"

	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/envtest"
)

// checkClusterDNS proves the cluster DNS of a Cluster Basalt made, from the test web server pod
// at clientIP (reached from host `from`): the API's Service name resolves to its ClusterIP, a
// Service of another namespace resolves by its short name and answers through it, CoreDNS runs
// the replicas asked for, and a drain of a node that holds a CoreDNS pod (its eviction through
// the PodDisruptionBudget) leaves names resolving throughout. It returns how long after start
// the first name resolved.
func checkClusterDNS(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, from *bed.Host, clientIP string, start time.Time) time.Duration {
	t.Helper()
	get := func(path string) (string, error) {
		out, err := from.Run(ctx, "curl -sS --max-time 8 'http://"+clientIP+":8080"+path+"'")
		return strings.TrimSpace(out), err
	}
	lookup := func(name string) (string, error) {
		out, err := get("/lookup?name=" + url.QueryEscape(name))
		if err != nil || !strings.HasPrefix(out, "addrs=") {
			return "", fmt.Errorf("looking up %s from the pod: %q %w", name, out, err)
		}
		return strings.TrimPrefix(out, "addrs="), nil
	}
	var resolvedAfter time.Duration
	framework.Eventually(t, 2*time.Minute, func() error {
		addrs, err := lookup("kubernetes.default.svc.cluster.local")
		if err != nil {
			return err
		}
		if addrs != "10.96.0.1" {
			return fmt.Errorf("kubernetes.default.svc.cluster.local is %s, want 10.96.0.1", addrs)
		}
		resolvedAfter = time.Since(start)
		return nil
	})

	// A Service in another namespace, by its short name (the pod's search path adds .svc.cluster.local).
	if _, err := wc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	shopPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-web", Namespace: "shop", Labels: map[string]string{"app": "shop"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever,
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 2}}}},
	}
	if _, err := wc.CoreV1().Pods("shop").Create(ctx, shopPod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "storefront", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "shop"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	created, err := wc.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 3*time.Minute, func() error {
		addrs, err := lookup("storefront.shop")
		if err != nil {
			return err
		}
		if addrs != created.Spec.ClusterIP {
			return fmt.Errorf("storefront.shop is %s, want its ClusterIP %s", addrs, created.Spec.ClusterIP)
		}
		out, err := get("/fetch?url=" + url.QueryEscape("http://storefront.shop/"))
		if err != nil || !strings.Contains(out, "hostname=shop-web") {
			return fmt.Errorf("http://storefront.shop/ from the pod: %q %w", out, err)
		}
		return nil
	})
	if _, err := lookup("no-such-service.shop.svc.cluster.local"); err == nil {
		t.Error("a Service that does not exist resolved")
	}
	t.Logf("Cluster DNS: kubernetes.default resolved %s after the Cluster was applied; storefront.shop resolves across namespaces and answers through its name",
		resolvedAfter.Round(time.Second))

	// CoreDNS: the replicas asked for, a budget, and names resolving through a drain.
	pods, err := wc.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 2 {
		t.Fatalf("%d CoreDNS pods, want 2", len(pods.Items))
	}
	if pdb, err := wc.PolicyV1().PodDisruptionBudgets("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); err != nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Fatalf("CoreDNS PodDisruptionBudget: %+v %v", pdb, err)
	}
	framework.Eventually(t, 2*time.Minute, func() error {
		pdb, err := wc.PolicyV1().PodDisruptionBudgets("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pdb.Status.DisruptionsAllowed != 1 {
			return fmt.Errorf("the CoreDNS budget allows %d disruptions (%d healthy)", pdb.Status.DisruptionsAllowed, pdb.Status.CurrentHealthy)
		}
		return nil
	})
	victim := pods.Items[0]
	node := victim.Spec.NodeName
	cordon(ctx, t, wc, node, true)
	defer cordon(context.WithoutCancel(ctx), t, wc, node, false)
	stop := make(chan struct{})
	failures := make(chan []string, 1)
	go func() {
		var failed []string
		for {
			select {
			case <-stop:
				failures <- failed
				return
			case <-time.After(500 * time.Millisecond):
			}
			if _, err := lookup("storefront.shop.svc.cluster.local"); err != nil {
				failed = append(failed, err.Error())
			}
		}
	}()
	// Every CoreDNS pod of the node goes by eviction, as a drain does: the budget lets one go at
	// a time, the next waits until the replacement is ready (429 until then).
	for _, p := range pods.Items {
		if p.Spec.NodeName != node {
			continue
		}
		framework.Eventually(t, 3*time.Minute, func() error {
			err := wc.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("evicting %s: %w", p.Name, err)
			}
			return nil
		})
	}
	framework.Eventually(t, 3*time.Minute, func() error {
		list, err := wc.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range list.Items {
			if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
				return fmt.Errorf("CoreDNS pod %s still on the drained node %s", p.Name, node)
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d CoreDNS pods ready after the drain, want 2", ready)
		}
		return nil
	})
	close(stop)
	if failed := <-failures; len(failed) > 0 {
		t.Errorf("%d lookups failed while node %s was drained of CoreDNS: %s", len(failed), node, strings.Join(failed, "; "))
	}
	t.Logf("Node %s drained of CoreDNS through its budget; names resolved throughout", node)
	return resolvedAfter
}

// cordon marks a node unschedulable (or schedulable again).
func cordon(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, node string, on bool) {
	t.Helper()
	framework.Eventually(t, time.Minute, func() error {
		n, err := wc.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Unschedulable = on
		_, err = wc.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// checkPodLogs proves the API server reaches the kubelet for kubectl logs: the web server's first
// log line comes back.
func checkPodLogs(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, ns, pod string) {
	t.Helper()
	framework.Eventually(t, time.Minute, func() error {
		rc, err := wc.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).Stream(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
		if err != nil || !strings.Contains(string(b), "Serving on :8080") {
			return fmt.Errorf("logs of %s/%s: %q %w", ns, pod, b, err)
		}
		return nil
	})
}

// checkExecAndPortForward proves the other two ways the API server reaches the kubelet: kubectl
// exec (a command runs in the web server's container and its output comes back) and kubectl
// port-forward (an HTTP request through a local port reaches the pod).
func checkExecAndPortForward(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, rc *rest.Config, ns, pod string) {
	t.Helper()
	framework.Eventually(t, time.Minute, func() error {
		req := wc.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "web", Command: []string{"/webserver", "-say", "exec-ok"}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
		ex, err := remotecommand.NewSPDYExecutor(rc, http.MethodPost, req.URL())
		if err != nil {
			return err
		}
		var out, errOut bytes.Buffer
		if err := ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut}); err != nil {
			return fmt.Errorf("exec in %s/%s: %w (%s)", ns, pod, err, errOut.String())
		}
		if strings.TrimSpace(out.String()) != "exec-ok" {
			return fmt.Errorf("exec in %s/%s printed %q", ns, pod, out.String())
		}
		return nil
	})
	framework.Eventually(t, time.Minute, func() error {
		transport, upgrader, err := spdy.RoundTripperFor(rc)
		if err != nil {
			return err
		}
		u := wc.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
		dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
		stop, ready := make(chan struct{}), make(chan struct{})
		defer close(stop)
		fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:8080"}, stop, ready, io.Discard, io.Discard)
		if err != nil {
			return err
		}
		errc := make(chan error, 1)
		go func() { errc <- fw.ForwardPorts() }()
		select {
		case <-ready:
		case err := <-errc:
			return fmt.Errorf("port-forward to %s/%s: %w", ns, pod, err)
		case <-time.After(30 * time.Second):
			return fmt.Errorf("port-forward to %s/%s: not ready after 30s", ns, pod)
		}
		ports, err := fw.GetPorts()
		if err != nil || len(ports) != 1 {
			return fmt.Errorf("port-forward ports %v: %w", ports, err)
		}
		hc := &http.Client{Timeout: 10 * time.Second}
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[0].Local))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "ok" {
			return fmt.Errorf("GET /healthz through port-forward: %s %q", resp.Status, b)
		}
		return nil
	})
}

// checkManifestAddon proves a user add-on from a ConfigMap: applied into the cluster and
// reported, applied again when the ConfigMap changes, and what it no longer holds pruned.
func checkManifestAddon(ctx context.Context, t *testing.T, c client.Client, wc *kubernetes.Clientset, cl *basaltv1.Cluster) {
	t.Helper()
	manifests := func(msg string, extra bool) string {
		y := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: addon-demo\n---\n" +
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: addon-demo\ndata:\n  msg: " + msg + "\n"
		if extra {
			y += "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: addon-demo\n"
		}
		return y
	}
	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cl.Namespace, Name: "demo-addon"}, Data: map[string]string{"app.yaml": manifests("hello", true)}}
	if err := c.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	chartSrc := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cl.Namespace, Name: "greeter-chart"},
		BinaryData: map[string][]byte{"greeter.tgz": envtest.GreeterChart(t, "0.1.0")}}
	if err := c.Create(ctx, chartSrc); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(cl.DeepCopy())
	cl.Spec.Addons.Manifests = []basaltv1.ManifestAddon{{Name: "demo", ConfigMapRef: &basaltv1.LocalObjectReference{Name: src.Name}, Prune: true}}
	cl.Spec.Addons.Charts = []basaltv1.ChartAddon{{Name: "greeter", Namespace: "greeter", Prune: true,
		Chart:  basaltv1.ChartSource{ConfigMapRef: &basaltv1.LocalObjectReference{Name: chartSrc.Name}, Key: "greeter.tgz"},
		Values: &runtime.RawExtension{Raw: []byte(`{"msg":"from Basalt"}`)}}}
	if err := c.Patch(ctx, cl, patch); err != nil {
		t.Fatal(err)
	}
	chartApplied := func(version int32, msg string) {
		t.Helper()
		framework.Eventually(t, 4*time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(cl), got); err != nil {
				return err
			}
			for _, st := range got.Status.Addons {
				if st.Name != "greeter" {
					continue
				}
				if st.LastError != "" || st.Release == nil || st.Release.Version != version || st.Release.Chart != "greeter-0.1.0" {
					return fmt.Errorf("status.addons greeter: %+v", st)
				}
				cm, err := wc.CoreV1().ConfigMaps("greeter").Get(ctx, "greeter-greeting", metav1.GetOptions{})
				if err != nil || cm.Data["msg"] != msg {
					return fmt.Errorf("greeter/greeter-greeting in the cluster: %v %w, want msg %s", cm.Data, err, msg)
				}
				return nil
			}
			return errors.New("no status.addons entry for greeter")
		})
	}
	chartApplied(1, "from Basalt")
	t.Logf("Helm chart add-on installed as release greeter (version 1) from ConfigMap %s", chartSrc.Name)
	patch = client.MergeFrom(cl.DeepCopy())
	cl.Spec.Addons.Charts[0].Values = &runtime.RawExtension{Raw: []byte(`{"msg":"upgraded"}`)}
	if err := c.Patch(ctx, cl, patch); err != nil {
		t.Fatal(err)
	}
	chartApplied(2, "upgraded")
	t.Logf("New values upgraded the release to version 2")
	applied := time.Now()
	var first string
	wait := func(msg string, extraWanted bool) {
		framework.Eventually(t, 4*time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(cl), got); err != nil {
				return err
			}
			var st *basaltv1.AddonStatus
			for i := range got.Status.Addons {
				if got.Status.Addons[i].Name == "demo" {
					st = &got.Status.Addons[i]
				}
			}
			if st == nil || st.Revision == "" || st.LastError != "" || st.Revision == first {
				return fmt.Errorf("status.addons demo: %+v", st)
			}
			cm, err := wc.CoreV1().ConfigMaps("addon-demo").Get(ctx, "greeting", metav1.GetOptions{})
			if err != nil || cm.Data["msg"] != msg {
				return fmt.Errorf("addon-demo/greeting in the cluster: %v %w, want msg %s", cm.Data, err, msg)
			}
			_, err = wc.CoreV1().ConfigMaps("addon-demo").Get(ctx, "extra", metav1.GetOptions{})
			if extraWanted != (err == nil) {
				return fmt.Errorf("addon-demo/extra in the cluster: %w (wanted: %v)", err, extraWanted)
			}
			if first == "" {
				first = st.Revision
			}
			return nil
		})
	}
	wait("hello", true)
	t.Logf("User add-on from ConfigMap %s applied %s after it was named in the Cluster", src.Name, time.Since(applied).Round(time.Second))
	src.Data["app.yaml"] = manifests("hi", false)
	if err := c.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	wait("hi", false)
	t.Logf("Changed ConfigMap applied and the object it dropped pruned %s after the change", time.Since(changed).Round(time.Second))
}

// checkNodeMetrics is `kubectl top nodes` through the aggregated metrics.k8s.io API that the
// metrics-server add-on serves: every node is listed with its CPU and memory usage.
func checkNodeMetrics(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, nodes int) {
	t.Helper()
	framework.Eventually(t, 2*time.Minute, func() error {
		raw, err := wc.RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("GET /apis/metrics.k8s.io/v1beta1/nodes: %w", err)
		}
		var list struct {
			Items []struct {
				Metadata struct{ Name string } `json:"metadata"`
				Usage    map[string]string     `json:"usage"`
			} `json:"items"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return err
		}
		if len(list.Items) != nodes {
			return fmt.Errorf("node metrics for %d nodes, want %d: %s", len(list.Items), nodes, raw)
		}
		for _, it := range list.Items {
			if it.Usage["cpu"] == "" || it.Usage["memory"] == "" {
				return fmt.Errorf("node %s has no cpu/memory usage: %v", it.Metadata.Name, it.Usage)
			}
		}
		t.Logf("Node metrics (kubectl top nodes): %d nodes, e.g. %s cpu=%s memory=%s", len(list.Items), list.Items[0].Metadata.Name, list.Items[0].Usage["cpu"], list.Items[0].Usage["memory"])
		return nil
	})
}

// checkLocalStorage proves the default StorageClass: a claim naming no class binds once its pod
// is scheduled, the pod writes to the volume, the pod is deleted and made again (on the same
// node: the volume's node affinity puts it there) and reads the data back.
func checkLocalStorage(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, from *bed.Host) {
	t.Helper()
	start := time.Now()
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}},
	}
	if _, err := wc.CoreV1().PersistentVolumeClaims("default").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "store", Namespace: "default"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever,
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
		},
	}
	run := func() (ip, node string) {
		t.Helper()
		framework.Eventually(t, time.Minute, func() error {
			_, err := wc.CoreV1().Pods("default").Create(ctx, pod.DeepCopy(), metav1.CreateOptions{})
			return err
		})
		framework.Eventually(t, 4*time.Minute, func() error {
			p, err := wc.CoreV1().Pods("default").Get(ctx, "store", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				claim, _ := wc.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
				return fmt.Errorf("pod store: %s %s; claim %s", p.Status.Phase, podMessage(p), claim.Status.Phase)
			}
			ip, node = p.Status.PodIP, p.Spec.NodeName
			return nil
		})
		return ip, node
	}
	ip, node := run()
	claim, err := wc.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	if err != nil || claim.Status.Phase != corev1.ClaimBound || claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != "local-path" {
		t.Fatalf("claim data: %+v %v", claim.Status, err)
	}
	t.Logf("Claim bound from the default StorageClass local-path (volume %s) and its pod Running on %s %s after the claim was made",
		claim.Spec.VolumeName, node, time.Since(start).Round(time.Second))
	const note = "kept across pods"
	if out, err := from.Run(ctx, "curl -fsS --max-time 8 -X PUT --data-binary '"+note+"' http://"+ip+":8080/data/note"); err != nil {
		t.Fatalf("writing to the volume: %q %v", out, err)
	}
	if err := wc.CoreV1().Pods("default").Delete(ctx, "store", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 2*time.Minute, func() error {
		_, err := wc.CoreV1().Pods("default").Get(ctx, "store", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("pod store still there (%w)", err)
	})
	ip2, node2 := run()
	if node2 != node {
		t.Errorf("the new pod runs on %s, the volume is on %s", node2, node)
	}
	framework.Eventually(t, time.Minute, func() error {
		out, err := from.Run(ctx, "curl -fsS --max-time 8 http://"+ip2+":8080/data/note")
		if err != nil || strings.TrimSpace(out) != note {
			return fmt.Errorf("reading the volume from the new pod: %q %w", out, err)
		}
		return nil
	})
	t.Logf("The new pod on %s read back what the first one wrote", node2)
}
