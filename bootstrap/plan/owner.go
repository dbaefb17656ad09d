package plan

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
)

// ownerRE is File.Owner: a numeric uid and gid, in decimal without leading zeros.
var ownerRE = regexp.MustCompile(`^(0|[1-9][0-9]*):(0|[1-9][0-9]*)$`)

// ParseOwner returns the uid and gid of a File.Owner; empty is root, 0:0. Names are refused:
// a host may not know them, and the same name may have another number on another host.
func ParseOwner(owner string) (uid, gid int, err error) {
	if owner == "" {
		return 0, 0, nil
	}
	m := ownerRE.FindStringSubmatch(owner)
	if m == nil {
		return 0, 0, fmt.Errorf(`owner %q must be a numeric "uid:gid", e.g. "0:0"`, owner)
	}
	ids := [2]int{}
	for i, s := range m[1:] {
		// 2^32-1 is not an id: chown reads it as "leave unchanged".
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == math.MaxUint32 {
			return 0, 0, fmt.Errorf(`owner %q: %s must be a number below 4294967295`, owner, [2]string{"uid", "gid"}[i])
		}
		ids[i] = int(n)
	}
	return ids[0], ids[1], nil
}
