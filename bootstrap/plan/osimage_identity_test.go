package plan

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestOSImageIdentityValidation(t *testing.T) {
	sum := strings.Repeat("a", 64)
	ok := []OSImage{
		{Name: "basalt-root", SHA256: sum, Disk: "/dev/sda", WWN: "0x5000c500a1b2c3d4", Serial: "ZC1ABCDE"},
		{Name: "basalt-root", SHA256: sum, Disk: "/dev/nvme0n1", WWN: "eui.0025388b91b12345", Serial: "S437NA0M123456", Erase: true},
		{Name: "basalt-root", SHA256: sum, Disk: "/dev/vda", Serial: "virtio disk 1"},
	}
	for _, o := range ok {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := map[string]OSImage{
		"os.wwn":    {WWN: "0x50\n00"},
		"os.serial": {Serial: " ZC1ABCDE"},
	}
	bad["os.serial "] = OSImage{Serial: strings.Repeat("s", MaxDiskIdentityLen+1)}
	for want, o := range bad {
		o.Name, o.SHA256, o.Disk = "basalt-root", sum, "/dev/sda"
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(want)) {
			t.Errorf("%+v: got %v, want an error about %s", o, err, want)
		}
	}
	// The new fields are left out of the encoding when empty: Plans from before hash the same.
	p := &Plan{Host: "n", OS: &OSImage{Name: "basalt-root", SHA256: sum, Disk: "/dev/sda"}}
	b, _ := json.Marshal(p)
	if b := string(b); strings.Contains(b, "wwn") || strings.Contains(b, "erase") || strings.Contains(b, "serial") {
		t.Errorf("encoding has empty identity fields: %s", b)
	}
}
