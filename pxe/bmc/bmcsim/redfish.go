package bmcsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// Redfish is a small Redfish service (in the spirit of sushy-tools, which Metal3 tests with) in
// front of one System: a service root, SessionService sessions (X-Auth-Token) and HTTP Basic
// authentication, a Systems collection with one ComputerSystem whose PowerState and Boot come from
// the System, PATCH of Boot overrides, and the ComputerSystem.Reset action with On, ForceOff,
// ForceRestart and PowerCycle. Serve it over TLS with net/http/httptest or any http.Server.
type Redfish struct {
	// Username and Password are the one account. Required.
	Username, Password string
	// System is the machine the BMC controls. Required.
	System System
	// SystemID names the system: /redfish/v1/Systems/<SystemID>. Default "1".
	SystemID string
	// NoSessions leaves out the SessionService, as some older BMCs do: only HTTP Basic works.
	NoSessions bool

	mu       sync.Mutex
	sessions map[string]string // token → session id
	created  int
	deleted  int
}

const redfishRoot = "/redfish/v1"

func (f *Redfish) systemPath() string {
	id := f.SystemID
	if id == "" {
		id = "1"
	}
	return redfishRoot + "/Systems/" + id
}

// SessionsOpen is the number of sessions created and not yet deleted.
func (f *Redfish) SessionsOpen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// SessionsCreated and SessionsDeleted count session logins and logouts.
func (f *Redfish) SessionsCreated() (created, deleted int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created, f.deleted
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func redfishError(w http.ResponseWriter, code int, id, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{
		"code":    "Base.1.8." + id,
		"message": msg,
		"@Message.ExtendedInfo": []map[string]any{{
			"MessageId": "Base.1.8." + id, "Message": msg, "Severity": "Warning",
		}},
	}})
}

func (f *Redfish) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, ok := f.sessions[tok]
		return ok
	}
	if u, p, ok := r.BasicAuth(); ok {
		return f.checkPassword(u, p)
	}
	return false
}

func (f *Redfish) checkPassword(u, p string) bool {
	uok := subtle.ConstantTimeCompare([]byte(u), []byte(f.Username)) == 1
	pok := subtle.ConstantTimeCompare([]byte(p), []byte(f.Password)) == 1
	return uok && pok && f.Username != ""
}

// ServeHTTP implements http.Handler.
func (f *Redfish) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	sessions := redfishRoot + "/SessionService/Sessions"
	switch {
	case path == redfishRoot && r.Method == http.MethodGet:
		links := map[string]any{"Sessions": map[string]string{"@odata.id": sessions}}
		if f.NoSessions {
			links = map[string]any{}
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id":      redfishRoot + "/",
			"@odata.type":    "#ServiceRoot.v1_11_0.ServiceRoot",
			"Id":             "RootService",
			"Name":           "Basalt BMC simulator",
			"RedfishVersion": "1.11.0",
			"Systems":        map[string]string{"@odata.id": redfishRoot + "/Systems"},
			"SessionService": map[string]string{"@odata.id": redfishRoot + "/SessionService"},
			"Links":          links,
		})
		return
	case path == sessions && r.Method == http.MethodPost && !f.NoSessions:
		f.createSession(w, r)
		return
	}
	if !f.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="bmcsim"`)
		redfishError(w, http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
		return
	}
	switch {
	case strings.HasPrefix(path, sessions+"/") && r.Method == http.MethodDelete:
		f.deleteSession(w, r, strings.TrimPrefix(path, sessions+"/"))
	case path == redfishRoot+"/Systems" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id":           redfishRoot + "/Systems",
			"@odata.type":         "#ComputerSystemCollection.ComputerSystemCollection",
			"Name":                "Computer System Collection",
			"Members@odata.count": 1,
			"Members":             []map[string]string{{"@odata.id": f.systemPath()}},
		})
	case path == f.systemPath() && r.Method == http.MethodGet:
		f.getSystem(w, r)
	case path == f.systemPath() && r.Method == http.MethodPatch:
		f.patchSystem(w, r)
	case path == f.systemPath()+"/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		f.reset(w, r)
	default:
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
	}
}

func (f *Redfish) createSession(w http.ResponseWriter, r *http.Request) {
	var body struct{ UserName, Password string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		redfishError(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if !f.checkPassword(body.UserName, body.Password) {
		redfishError(w, http.StatusUnauthorized, "InsufficientPrivilege", "Invalid username or password.")
		return
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	f.mu.Lock()
	if f.sessions == nil {
		f.sessions = map[string]string{}
	}
	f.created++
	id := fmt.Sprintf("%d", f.created)
	f.sessions[token] = id
	f.mu.Unlock()
	loc := redfishRoot + "/SessionService/Sessions/" + id
	w.Header().Set("X-Auth-Token", token)
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusCreated, map[string]any{
		"@odata.id": loc, "@odata.type": "#Session.v1_0_0.Session", "Id": id, "UserName": body.UserName,
	})
}

func (f *Redfish) deleteSession(w http.ResponseWriter, _ *http.Request, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for tok, sid := range f.sessions {
		if sid == id {
			delete(f.sessions, tok)
			f.deleted++
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "No session "+id+".")
}

func (f *Redfish) getSystem(w http.ResponseWriter, r *http.Request) {
	on, err := f.System.PowerState(r.Context())
	if err != nil {
		redfishError(w, http.StatusInternalServerError, "InternalError", "reading the power state: "+err.Error())
		return
	}
	power := "Off"
	if on {
		power = "On"
	}
	dev, persistent := f.System.BootOverride()
	enabled, target := "Disabled", "None"
	if dev != BootNone {
		target, enabled = string(dev), "Once"
		if persistent {
			enabled = "Continuous"
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":   f.systemPath(),
		"@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
		"Id":          strings.TrimPrefix(f.systemPath(), redfishRoot+"/Systems/"),
		"Name":        "bmcsim",
		"SystemType":  "Virtual",
		"PowerState":  power,
		"Boot": map[string]any{
			"BootSourceOverrideEnabled":                        enabled,
			"BootSourceOverrideTarget":                         target,
			"BootSourceOverrideMode":                           "Legacy",
			"BootSourceOverrideTarget@Redfish.AllowableValues": []string{"None", "Pxe", "Hdd"},
		},
		"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
			"target":                            f.systemPath() + "/Actions/ComputerSystem.Reset",
			"ResetType@Redfish.AllowableValues": []string{"On", "ForceOff", "ForceRestart", "PowerCycle"},
		}},
	})
}

func (f *Redfish) patchSystem(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Boot *struct {
			BootSourceOverrideEnabled string
			BootSourceOverrideTarget  string
		}
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16384)).Decode(&body); err != nil {
		redfishError(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	if body.Boot == nil {
		redfishError(w, http.StatusBadRequest, "PropertyNotWritable", "Only Boot may be patched.")
		return
	}
	cur, curPersistent := f.System.BootOverride()
	dev := cur
	if t := body.Boot.BootSourceOverrideTarget; t != "" {
		dev = BootDevice(t)
		if t == "None" {
			dev = BootNone
		}
	}
	persistent := curPersistent
	switch body.Boot.BootSourceOverrideEnabled {
	case "":
	case "Once":
		persistent = false
	case "Continuous":
		persistent = true
	case "Disabled":
		dev = BootNone
	default:
		redfishError(w, http.StatusBadRequest, "PropertyValueNotInList",
			"BootSourceOverrideEnabled "+body.Boot.BootSourceOverrideEnabled+" is not one of Disabled, Once, Continuous.")
		return
	}
	if err := f.System.SetBootOverride(r.Context(), dev, persistent); err != nil {
		redfishError(w, http.StatusBadRequest, "PropertyValueNotInList", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Redfish) reset(w http.ResponseWriter, r *http.Request) {
	var body struct{ ResetType string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		redfishError(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON.")
		return
	}
	var err error
	switch body.ResetType {
	case "On":
		err = f.System.PowerOn(r.Context())
	case "ForceOff":
		err = f.System.ForceOff(r.Context())
	case "ForceRestart", "PowerCycle":
		err = f.System.ForceRestart(r.Context())
	default:
		redfishError(w, http.StatusBadRequest, "ActionParameterNotSupported",
			"ResetType "+body.ResetType+" is not one of On, ForceOff, ForceRestart, PowerCycle.")
		return
	}
	if err != nil {
		redfishError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
