package tftp

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/pin/tftp/v3"
)

// BenchmarkTransferIPXE: a PXE ROM's download of Debian's ipxe.efi from the server on loopback
// (pin/tftp's client, one transfer per op, MB/s over the file): RFC 1350 lockstep with 512-byte
// blocks, lockstep with blksize 1468 (what UEFI PXE ROMs negotiate on Ethernet), and 1468 with
// the server's window of 8 blocks (WindowSize).
func BenchmarkTransferIPXE(b *testing.B) {
	file := filepath.Join(DefaultRoot, "ipxe.efi")
	fi, err := os.Stat(file)
	if err != nil {
		b.Fatalf("the TFTP benchmark serves the real iPXE binary, and %s is missing (%v): "+
			"install Debian's ipxe package (apt-get install ipxe; make test installs it)", file, err)
	}
	size := fi.Size()
	for _, tc := range []struct {
		name            string
		blksize, window int
	}{
		{"blksize-512-lockstep", 512, 1},
		{"blksize-1468-lockstep", 1468, 1},
		{"blksize-1468-window-8", 1468, 8},
	} {
		b.Run(tc.name, func(b *testing.B) {
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := conn.LocalAddr().String()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- (&Server{WindowSize: tc.window, Log: logr.Discard()}).Serve(ctx, conn) }()
			defer func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						b.Errorf("Serve: %v", err)
					}
				case <-time.After(15 * time.Second):
					b.Error("Serve did not return after cancel")
				}
			}()
			c, err := tftp.NewClient(addr)
			if err != nil {
				b.Fatal(err)
			}
			c.SetTimeout(time.Second)
			c.SetRetries(3)
			c.SetBlockSize(tc.blksize)
			c.RequestTSize(true)
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				wt, err := c.Receive("ipxe.efi", "octet")
				if err != nil {
					b.Fatal(err)
				}
				n, err := wt.WriteTo(io.Discard)
				if err != nil || n != size {
					b.Fatalf("received %d of %d bytes: %v", n, size, err)
				}
			}
		})
	}
}
