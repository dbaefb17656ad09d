package pki

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	cfsslog "github.com/cloudflare/cfssl/log"
	"github.com/go-logr/logr"
)

// The logger adapter is the only place cfssl's global logger is configured. By default cfssl's
// output is discarded: every failure it logs is also returned as an error.
var logMu sync.Mutex

func init() { SetLogger(logr.Discard()) }

// SetLogger sends cfssl's log output to l: debug and info messages at V(2), warnings at V(1),
// errors and worse through l.Error. cfssl never logs key material.
func SetLogger(l logr.Logger) {
	logMu.Lock()
	defer logMu.Unlock()
	cfsslog.Level = cfsslog.LevelDebug
	cfsslog.SetLogger(cfsslAdapter{l.WithName("cfssl")})
}

// cfsslAdapter implements cfssl's SyslogWriter on top of logr.
type cfsslAdapter struct{ l logr.Logger }

func (a cfsslAdapter) Debug(m string)   { a.l.V(2).Info(capitalize(m)) }
func (a cfsslAdapter) Info(m string)    { a.l.V(2).Info(capitalize(m)) }
func (a cfsslAdapter) Warning(m string) { a.l.V(1).Info(capitalize(m)) }
func (a cfsslAdapter) Err(m string)     { a.l.Error(nil, capitalize(m)) }
func (a cfsslAdapter) Crit(m string)    { a.l.Error(nil, capitalize(m)) }
func (a cfsslAdapter) Emerg(m string)   { a.l.Error(nil, capitalize(m)) }

// capitalize follows the project's log style: a capital first letter and no final period.
func capitalize(m string) string {
	m = strings.TrimSuffix(strings.TrimSpace(m), ".")
	r, n := utf8.DecodeRuneInString(m)
	if n == 0 {
		return m
	}
	return string(unicode.ToUpper(r)) + m[n:]
}
