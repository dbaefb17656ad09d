// Package host reconciles Host objects: the machines Basalt may install Kubernetes onto.
//
// A Host moves through an explicit state machine (see basaltv1.HostState):
//
//	Registering → Inspecting → Available → Provisioning → Provisioned
//	                               ▲                           │
//	                               └────── Deprovisioning ◄────┘
//	(any) → Error
//
// Each state has one handler in stateHandlers. The agent that moves a Host out of Registering is
// not built yet, so today every Host stays in Registering with Ready=False and reason
// NotImplemented; the controller still owns the finalizer, releases claims whose Machine is gone,
// and refuses to let a Host in use disappear under its Machine.
package host
