package v1alpha1

// AnnotationReprovision, set on a Host (any non-empty value; `basaltctl host reprovision` writes
// the time of the request in RFC 3339), asks the Host controller to provision the Host again
// from scratch: wipe what Basalt wrote on it, install or PXE-boot the agent again and inspect the
// hardware anew. Each value is acted on once (status.lastReprovision records it) and the
// annotation stays, so a GitOps tool that keeps it does not wipe the Host on every sync; a new
// request is a new value. A Host consumed by a Machine is wiped too: take it out of its Cluster
// first, unless the node is lost anyway.
const AnnotationReprovision = "basalt.dev/reprovision"

// AnnotationConfirmWiped, set on an Unwiped Host (any non-empty value; `basaltctl host
// confirm-wiped` writes the time of the request in RFC 3339), is an operator's word that what the
// Host's former consumer left on it is gone (the machine was erased or reinstalled by hand)
// although its agent never confirmed it. The Host then becomes Available with condition Wiped
// reason WipeOverridden, and its disk is no longer taken to hold Basalt's root image. Each value
// is answered once (status.lastWipeConfirmation): a value first seen while the Host waits for no
// wipe is refused there and never vouches for a later release, so a GitOps tool that keeps the
// annotation cannot let an unwiped Host back into the pool. Even so, an agent that still holds
// another Cluster's Plan wipes that state before it applies a new Cluster's Plan
// (plan.Plan.Cluster).
const AnnotationConfirmWiped = "basalt.dev/confirm-wiped"
