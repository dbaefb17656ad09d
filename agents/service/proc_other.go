//go:build !linux

package service

import "errors"

// The supervisor adopts processes through /proc, which only Linux has; elsewhere nothing is
// ever adopted and a recorded process is treated as gone.

func procInfo(pid int) (state byte, pgrp int, startTime uint64, err error) {
	return 0, 0, 0, errors.New("no /proc on this OS")
}

func alive(pid int, startTime uint64) bool { return false }

func findByNonce(nonce string) (int, uint64) { return 0, 0 }
