package ssh_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/basalt-dev/basalt/agents/protocol"
	agentssh "github.com/basalt-dev/basalt/agents/ssh"
)

// Example shows how the Host controller provisions an SSH host: credentials from the Secret, the
// host key policy from spec and status, a fresh bootstrap, then Install; the presented key is
// recorded on first contact and a mismatch stops provisioning.
func Example() {
	ctx := context.Background()
	var (
		privateKey []byte   // Secret data named by spec.ssh.privateKeySecretRef
		pinned     []string // spec.ssh.hostKeys
		recorded   string   // status.sshHostKey
		boot       protocol.Bootstrap
	)
	signer, err := agentssh.SignerFromSecretData(privateKey)
	if err != nil {
		fmt.Println("credentials:", err)
		return
	}
	pinnedKeys, err := agentssh.ParseHostKeys(pinned)
	if err != nil {
		fmt.Println("spec.ssh.hostKeys:", err)
		return
	}
	target := agentssh.Target{Address: "10.0.0.5", Signer: signer, PinnedKeys: pinnedKeys}
	if recorded != "" {
		if target.RecordedKey, err = agentssh.ParseHostKey(recorded); err != nil {
			fmt.Println("status.sshHostKey:", err)
			return
		}
	}
	agent, err := agentssh.BinaryFromFile("/basalt-agent", "amd64")
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := (&agentssh.Installer{}).Install(ctx, agentssh.InstallInput{Target: target, Agent: agent, Bootstrap: boot})
	var mismatch *agentssh.HostKeyMismatchError
	switch {
	case errors.As(err, &mismatch):
		fmt.Println("HostKeyVerified=False reason=HostKeyMismatch:", mismatch)
		return
	case res.HostKey != nil && len(pinnedKeys) == 0 && recorded == "":
		fmt.Println("record status.sshHostKey:", agentssh.MarshalHostKey(res.HostKey))
	}
	if err != nil {
		fmt.Println("retry later:", err)
		return
	}
	if !res.BootstrapWritten {
		fmt.Println("the agent is registered already: revoke the unused token")
	}
}
