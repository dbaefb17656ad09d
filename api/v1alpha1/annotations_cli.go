package v1alpha1

// AnnotationReprovision, set on a Host (any non-empty value; `basaltctl host reprovision` writes
// the time of the request in RFC 3339), asks the Host controller to provision the Host again
// from scratch: wipe what Basalt wrote on it, install or PXE-boot the agent again and inspect the
// hardware anew. The Host controller removes the annotation once it has started, so the value of
// a request seen is never acted on twice. A Host consumed by a Machine is wiped too: take it out
// of its Cluster first, unless the node is lost anyway.
const AnnotationReprovision = "basalt.dev/reprovision"
