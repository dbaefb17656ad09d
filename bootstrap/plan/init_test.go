package plan

import (
	"strings"
	"testing"
)

func TestInitValidation(t *testing.T) {
	base := func() *Plan {
		return &Plan{Format: FormatVersion, Host: "h", Services: []Service{{
			Name: "db", Argv: []string{"/usr/bin/db"}, StateDirs: []string{"/var/lib/db"},
			Init: &Init{Argv: []string{"/bin/true"}, Creates: "/var/lib/db"},
		}}}
	}
	if err := base().Validate(); err != nil {
		t.Fatal(err)
	}
	for want, mutate := range map[string]func(*Init){
		"init.argv[0] must be an absolute path":      func(i *Init) { i.Argv = []string{"true"} },
		"must be one of the service's state dirs":    func(i *Init) { i.Creates = "/var/lib/other" },
		"init.timeoutSeconds 4000 must be between 0": func(i *Init) { i.TimeoutSeconds = 4000 },
	} {
		p := base()
		mutate(p.Services[0].Init)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}
