package describe

import (
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// node is one line of the tree, the notes printed under it and its children.
type node struct {
	line     string
	notes    []string
	children []*node
}

// Render writes the tree of t. now is the clock ages are computed against.
//
//	Cluster prod  Provisioning  v1.37.2 (pending)  not ready  age 10h
//	│  control plane 2/3 ready, workers 1/2 ready, etcd 2 voters + 1 learner, version v1.37.2 not reached yet
//	│  ! ControlPlaneReady=False Applying: 2 of 3 control-plane Machines Ready; ...
//	├─ control plane: 3 desired, 2 ready
//	│  ├─ Machine prod-cp-a  Running  v1.37.2  ready  etcd voter  age 10h
//	│  │  └─ Host h1  Available  ssh root@10.0.0.11:22  agent v0.3.0  ready  age 11h
//	...
func (t *ClusterTree) Render(w io.Writer, now time.Time) error {
	var b strings.Builder
	write(&b, t.tree(now), "", true, true)
	_, err := io.WriteString(w, b.String())
	return err
}

// Progress is the one-line summary of where the Cluster is, e.g. "control plane 2/3 ready,
// workers 1/2 ready, etcd 3 voters, version v1.37.2".
func (t *ClusterTree) Progress() string {
	c := t.Cluster
	parts := []string{fmt.Sprintf("control plane %d/%d ready", c.Status.ControlPlane.Ready, c.Spec.ControlPlane.Replicas)}
	workers := int32(0)
	for _, p := range c.Spec.Workers {
		workers += p.Replicas
	}
	if workers > 0 || c.Status.Workers.Ready > 0 {
		parts = append(parts, fmt.Sprintf("workers %d/%d ready", c.Status.Workers.Ready, workers))
	} else {
		parts = append(parts, "no workers")
	}
	parts = append(parts, t.etcd())
	switch v := c.Status.Version; {
	case v == "":
		parts = append(parts, "version "+c.Spec.Version+" not reached yet")
	case v != c.Spec.Version:
		parts = append(parts, "version "+v+", upgrading to "+c.Spec.Version)
	default:
		parts = append(parts, "version "+v)
	}
	return strings.Join(parts, ", ")
}

// etcd counts the members the Cluster controller recorded on control-plane Machines.
func (t *ClusterTree) etcd() string {
	voters, learners := 0, 0
	for _, g := range t.Groups {
		for _, n := range g.Machines {
			switch e := n.Machine.Status.Etcd; {
			case e == nil || n.Machine.Spec.Role != basaltv1.RoleControlPlane:
			case e.Learner:
				learners++
			default:
				voters++
			}
		}
	}
	switch {
	case voters == 0 && learners == 0:
		return "etcd not formed"
	case learners == 0:
		return fmt.Sprintf("etcd %d %s", voters, plural(voters, "voter", "voters"))
	default:
		return fmt.Sprintf("etcd %d %s + %d %s", voters, plural(voters, "voter", "voters"), learners, plural(learners, "learner", "learners"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func (t *ClusterTree) tree(now time.Time) *node {
	c := t.Cluster
	fields := []string{"Cluster " + c.Name, orDash(string(c.Status.Phase)), version(c.Status.Version, c.Spec.Version)}
	if c.Spec.Paused {
		fields = append(fields, "paused")
	}
	fields = append(fields, readiness(c.Status.Conditions), age(c.CreationTimestamp, now))
	root := &node{line: strings.Join(fields, "  ")}
	root.notes = append(root.notes, t.Progress())
	if ep := c.Status.ControlPlaneEndpoint; ep != nil {
		access := fmt.Sprintf("endpoint %s:%d", ep.Host, ep.Port)
		if ref := c.Status.KubeconfigSecretRef; ref != nil {
			access += ", kubeconfig in Secret " + ref.Name
		}
		root.notes = append(root.notes, access)
	}
	if line := addonsLine(c.Status.Addons); line != "" {
		root.notes = append(root.notes, line)
	}
	root.notes = append(root.notes, conditionNotes(c.Status.Conditions)...)

	for _, g := range t.Groups {
		gn := &node{line: groupLine(g)}
		if len(g.Machines) == 0 {
			gn.notes = append(gn.notes, "no Machines yet")
		}
		for _, n := range g.Machines {
			gn.children = append(gn.children, machineNode(n, now))
		}
		root.children = append(root.children, gn)
	}
	return root
}

// addonsLine is one note for status.addons: each add-on with the revision applied, or its error.
func addonsLine(addons []basaltv1.AddonStatus) string {
	if len(addons) == 0 {
		return ""
	}
	parts := make([]string, 0, len(addons))
	for _, a := range addons {
		switch {
		case a.LastError != "":
			parts = append(parts, fmt.Sprintf("%s FAILED: %s", a.Name, a.LastError))
		case a.Revision == "":
			parts = append(parts, a.Name+" not applied yet")
		default:
			parts = append(parts, fmt.Sprintf("%s %s", a.Name, a.Revision))
		}
	}
	return "add-ons: " + strings.Join(parts, ", ")
}

func groupLine(g Group) string {
	name := "control plane"
	if g.Role == basaltv1.RoleWorker {
		name = "pool " + g.Pool
	}
	ready := 0
	for _, n := range g.Machines {
		if n.Machine.DeletionTimestamp.IsZero() && meta.IsStatusConditionTrue(n.Machine.Status.Conditions, basaltv1.ConditionReady) {
			ready++
		}
	}
	if g.Desired < 0 {
		return fmt.Sprintf("%s: not in spec, %d Machine(s) left", name, len(g.Machines))
	}
	return fmt.Sprintf("%s: %d desired, %d ready", name, g.Desired, ready)
}

func machineNode(n MachineNode, now time.Time) *node {
	m := n.Machine
	fields := []string{"Machine " + m.Name, orDash(string(m.Status.Phase)), version(m.Status.Version, m.Spec.Version),
		readiness(m.Status.Conditions)}
	if m.Status.NodeName != "" && m.Status.NodeName != m.Name {
		fields = append(fields, "node "+m.Status.NodeName)
	}
	if e := m.Status.Etcd; e != nil && m.Spec.Role == basaltv1.RoleControlPlane {
		if e.Learner {
			fields = append(fields, "etcd learner")
		} else {
			fields = append(fields, "etcd voter")
		}
	}
	fields = append(fields, age(m.CreationTimestamp, now))
	mn := &node{line: strings.Join(fields, "  "), notes: conditionNotes(m.Status.Conditions)}
	if m.Status.FailureReason != "" {
		mn.notes = append(mn.notes, "! failed: "+m.Status.FailureReason+": "+m.Status.FailureMessage)
	}
	switch {
	case n.Host != nil:
		mn.children = append(mn.children, hostNode(n.Host, now))
	case m.Spec.HostRef != nil:
		mn.children = append(mn.children, &node{line: "Host " + m.Spec.HostRef.Name + "  not found"})
	}
	return mn
}

func hostNode(h *basaltv1.Host, now time.Time) *node {
	fields := []string{"Host " + h.Name, orDash(string(h.Status.State))}
	switch {
	case h.Spec.SSH != nil:
		user, port := h.Spec.SSH.User, h.Spec.SSH.Port
		if user == "" {
			user = "root"
		}
		if port == 0 {
			port = 22
		}
		fields = append(fields, fmt.Sprintf("ssh %s@%s:%d", user, h.Spec.SSH.Address, port))
	case h.Spec.Boot != nil && len(h.Spec.Boot.MACAddresses) > 0:
		pxe := "pxe " + h.Spec.Boot.MACAddresses[0]
		if n := len(h.Spec.Boot.MACAddresses); n > 1 {
			pxe += fmt.Sprintf(" (+%d)", n-1)
		}
		fields = append(fields, pxe)
	}
	if !h.Spec.IsAccepted() {
		fields = append(fields, "not accepted")
	}
	if v := h.Status.Agent.Version; v != "" {
		fields = append(fields, "agent "+v)
	}
	if hw := h.Status.Hardware; hw != nil {
		s := fmt.Sprintf("%d CPUs", hw.CPUs)
		if hw.Memory != nil {
			s += " " + hw.Memory.String()
		}
		fields = append(fields, s)
	}
	fields = append(fields, readiness(h.Status.Conditions), age(h.CreationTimestamp, now))
	hn := &node{line: strings.Join(fields, "  "), notes: conditionNotes(h.Status.Conditions)}
	if h.Status.State == basaltv1.HostStateError && h.Status.ErrorMessage != "" {
		hn.notes = append(hn.notes, "! error: "+h.Status.ErrorMessage)
	}
	return hn
}

// conditionNotes lists the conditions that are not True. Ready is left out when another
// condition is listed: Ready repeats the reason and message of the first that is not True.
func conditionNotes(conds []metav1.Condition) []string {
	var notes []string
	var readyNote string
	for _, c := range conds {
		if c.Status == metav1.ConditionTrue {
			continue
		}
		s := fmt.Sprintf("! %s=%s %s", c.Type, c.Status, c.Reason)
		if c.Message != "" {
			s += ": " + c.Message
		}
		if c.Type == basaltv1.ConditionReady {
			readyNote = s
			continue
		}
		notes = append(notes, s)
	}
	if len(notes) == 0 && readyNote != "" {
		notes = append(notes, readyNote)
	}
	return notes
}

// readiness says what the Ready condition says.
func readiness(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, basaltv1.ConditionReady)
	switch {
	case c == nil:
		return "ready unknown"
	case c.Status == metav1.ConditionTrue:
		return "ready"
	case c.Status == metav1.ConditionFalse:
		return "not ready"
	default:
		return "ready unknown"
	}
}

// version shows the version running and, when it differs, the one wanted.
func version(running, wanted string) string {
	switch {
	case wanted == "" || running == wanted:
		return orDash(running)
	case running == "":
		return wanted + " (pending)"
	default:
		return running + " → " + wanted
	}
}

func age(created metav1.Time, now time.Time) string {
	if created.IsZero() {
		return "age -"
	}
	return "age " + duration.HumanDuration(now.Sub(created.Time))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// write prints n with its notes and children, drawing the tree with box characters.
func write(b *strings.Builder, n *node, prefix string, last, root bool) {
	childPrefix := prefix
	if root {
		b.WriteString(n.line + "\n")
	} else {
		branch, cont := "├─ ", "│  "
		if last {
			branch, cont = "└─ ", "   "
		}
		b.WriteString(prefix + branch + n.line + "\n")
		childPrefix = prefix + cont
	}
	notePrefix := childPrefix + "   "
	if len(n.children) > 0 {
		notePrefix = childPrefix + "│  "
	}
	for _, note := range n.notes {
		b.WriteString(strings.TrimRight(notePrefix+note, " ") + "\n")
	}
	for i, c := range n.children {
		write(b, c, childPrefix, i == len(n.children)-1, false)
	}
}
