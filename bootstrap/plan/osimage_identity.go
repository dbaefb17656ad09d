package plan

import "fmt"

// MaxDiskIdentityLen bounds OSImage.WWN and OSImage.Serial (the Host API's own bound).
const MaxDiskIdentityLen = 128

// validateIdentity checks OSImage.WWN and OSImage.Serial: printable ASCII, bounded. They are
// compared byte for byte with what the agent reads from sysfs, which it trims of surrounding
// spaces, so values with surrounding spaces or control characters could never match.
func (o *OSImage) validateIdentity() []error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"os.wwn", o.WWN}, {"os.serial", o.Serial}} {
		if !IsDiskIdentity(f.v) {
			errs = append(errs, fmt.Errorf("%s %q must be at most %d printable ASCII characters without surrounding spaces", f.name, f.v, MaxDiskIdentityLen))
		}
	}
	return errs
}

// IsDiskIdentity says whether s may be an OSImage's WWN or Serial ("" included).
func IsDiskIdentity(s string) bool {
	if len(s) > MaxDiskIdentityLen || (s != "" && (s[0] == ' ' || s[len(s)-1] == ' ')) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
