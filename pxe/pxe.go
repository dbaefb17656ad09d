// Package pxe runs Basalt's network boot services together: DHCP (pxe/dhcp), TFTP for the iPXE
// binaries (pxe/tftp) and HTTP for the per-MAC iPXE scripts, the agent kernel and its initramfs
// (pxe/httpboot). pxe/image builds that kernel and initramfs.
//
//	PXE ROM ─DHCP─► next-server + ipxe.efi | undionly.kpxe ─TFTP─► iPXE
//	iPXE    ─DHCP─► http://<server>:8080/boot/<mac>.ipxe ─HTTP─► script
//	script  ─HTTP─► /boot/kernel + /boot/initramfs (agent, bootstrap on the command line)
//	        or the local disk, for a provisioned host
//
// Start validates the three services, then runs them in one errgroup: the first that fails stops
// the others; when ctx ends every one closes its sockets and Start returns nil. Run it on one
// manager replica (the leader): two full-mode DHCP servers would lease from separate pools.
//
//	mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return pxe.Start(ctx, cfg) }))
//
// See docs/pxe.md for the whole design: modes, boot chain, security and measurements.
package pxe

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/basalt-dev/basalt/pxe/dhcp"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/pxe/tftp"
)

// Config holds the services Start runs.
type Config struct {
	// DHCP answers netbooting hosts. nil runs none: the site's DHCP server then points hosts at
	// TFTP and at HTTP itself.
	DHCP *dhcp.Server
	// TFTP serves the iPXE binaries. nil runs none (hosts that start in iPXE, or another TFTP
	// server).
	TFTP *tftp.Server
	// HTTP serves the scripts, the kernel and the initramfs. Required.
	HTTP *httpboot.Server
}

// Validate checks every service, after filling DHCP.HTTPBaseURL from HTTP.BaseURL when it is
// empty and HTTP.Clients with DHCP when it is nil (what they share: where scripts are, and the
// address DHCP leased to, or saw for, each MAC address, to which alone HTTP serves a script with
// a token).
func (c *Config) Validate() error {
	if c.HTTP == nil {
		return errors.New("pxe: HTTP is required: iPXE gets its scripts, kernel and initramfs there")
	}
	var errs []error
	if err := c.HTTP.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DHCP != nil {
		if c.DHCP.HTTPBaseURL == "" {
			c.DHCP.HTTPBaseURL = c.HTTP.BaseURL
		}
		if c.HTTP.Clients == nil {
			c.HTTP.Clients = c.DHCP
		}
		if err := c.DHCP.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.TFTP != nil {
		if err := c.TFTP.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Start validates cfg, then runs its services until ctx ends or one of them fails. It returns nil
// after a clean stop (every socket closed), the validation error before anything listens, or the
// first service error (the others are stopped first).
func Start(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("pxe: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	if cfg.DHCP != nil {
		g.Go(func() error { return cfg.DHCP.ListenAndServe(gctx) })
	}
	if cfg.TFTP != nil {
		g.Go(func() error { return cfg.TFTP.ListenAndServe(gctx) })
	}
	g.Go(func() error { return cfg.HTTP.ListenAndServe(gctx) })
	return g.Wait()
}
