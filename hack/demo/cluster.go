package main

import (
	"context"
)

// applyCluster applies the demo Cluster and waits for it to be Ready. The Cluster controller does
// not yet turn bound Hosts into a running cluster (PKI Secrets, Plans, etcd membership): until it
// does, this stage stops honestly.
func applyCluster(_ context.Context, _ *config, _ *state) error {
	return notYet("Stage \"cluster\" is not built yet: the hosts are Available with their agents connected, " +
		"but the Cluster controller does not yet generate their PKI and Plans (the lifecycle work). " +
		"The node Plans themselves are proven on the test bed by TestNodePlansMakeAKubernetesCluster; the demo stops here")
}
