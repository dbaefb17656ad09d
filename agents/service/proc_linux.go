package service

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procRoot is where the process table is read; tests never change it.
const procRoot = "/proc"

// procInfo reads the state, process group and start time (clock ticks since boot) of pid from
// /proc/<pid>/stat.
func procInfo(pid int) (state byte, pgrp int, startTime uint64, err error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, err
	}
	return parseStat(string(b))
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in parentheses and may hold
// spaces and parentheses itself, so fields are counted from the last ')'.
func parseStat(s string) (state byte, pgrp int, startTime uint64, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	if pgrp, err = strconv.Atoi(f[2]); err != nil {
		return 0, 0, 0, err
	}
	if startTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return 0, 0, 0, err
	}
	return f[0][0], pgrp, startTime, nil
}

// alive says whether pid runs and, when startTime is not 0, is the process that started then
// (not another one that reused the pid). A zombie is not alive.
func alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	state, _, st, err := procInfo(pid)
	if err != nil || state == 'Z' || state == 'X' {
		return false
	}
	return startTime == 0 || st == startTime
}

// findByNonce finds the process the Supervisor started with nonce in its environment: among the
// processes that carry it (children inherit it), the oldest process-group leader.
func findByNonce(nonce string) (pid int, startTime uint64) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, 0
	}
	want := []byte(NonceEnv + "=" + nonce)
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "environ"))
		if err != nil || !hasEnvEntry(env, want) {
			continue
		}
		state, pgrp, st, err := procInfo(p)
		if err != nil || state == 'Z' || pgrp != p {
			continue
		}
		if pid == 0 || st < startTime {
			pid, startTime = p, st
		}
	}
	return pid, startTime
}

func hasEnvEntry(environ, entry []byte) bool {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if bytes.Equal(kv, entry) {
			return true
		}
	}
	return false
}
