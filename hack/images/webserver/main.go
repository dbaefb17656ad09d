/*
Copyright 2026 The Basalt Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command webserver is the test workload of Basalt's artifact set, packed by
// hack/build-artifacts.sh as basalt.dev/webserver:v1. It listens on :8080 (flag -listen) and
// answers
//
//	GET /         200, text/plain: "hostname=<hostname>\npodIP=<ip>\n"
//	GET /healthz  200, "ok\n"
//	GET /lookup?name=N  resolves N as the pod's resolver does (its /etc/resolv.conf: the cluster
//	              DNS, search domains): 200 "addrs=<ip>,<ip>\n", or 502 with the error
//	GET /fetch?url=U    GETs the http URL U (by name, through the cluster DNS) and relays the
//	              answer's body with 200, or 502 with the error; 5 s timeout, 64 KiB at most
//	PUT /data/{name}    writes the body (64 KiB at most) to $DATA_DIR/name (default /data), 204
//	GET /data/{name}    reads it back, 200, or 404 when there is no such file
//
// The pod IP is $POD_IP when set (downward API), else the first global unicast address of the
// container's interfaces, IPv4 first. SIGTERM and SIGINT shut it down gracefully, exit code 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to listen on")
	say := flag.String("say", "", "print this line and exit instead of serving (a command for kubectl exec)")
	flag.Parse()
	if *say != "" {
		fmt.Println(*say)
		return
	}

	hostname, err := os.Hostname()
	if err != nil {
		log.Fatalf("Reading the hostname: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintf(w, "hostname=%s\npodIP=%s\n", hostname, podIP())
	})
	mux.HandleFunc("GET /lookup", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = fmt.Fprintf(w, "addrs=%s\n", strings.Join(addrs, ","))
	})
	mux.HandleFunc("GET /fetch", func(w http.ResponseWriter, r *http.Request) {
		u, err := url.Parse(r.URL.Query().Get("url"))
		if err != nil || u.Scheme != "http" || u.Host == "" {
			http.Error(w, "url must be an http URL", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil || resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("%s: status %d, %v", u, resp.StatusCode, err), http.StatusBadGateway)
			return
		}
		_, _ = w.Write(body)
	})
	dataDir := os.Getenv("DATA_DIR")
	if dataDir == "" {
		dataDir = "/data"
	}
	mux.HandleFunc("PUT /data/{name}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := os.WriteFile(filepath.Join(dataDir, filepath.Base(r.PathValue("name"))), body, 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /data/{name}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dataDir, filepath.Base(r.PathValue("name"))))
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("Serving on %s as %s", *listen, hostname)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("Serving: %v", err)
	}
}

// podIP returns $POD_IP or the first global unicast address of this network namespace.
func podIP() string {
	if ip := os.Getenv("POD_IP"); ip != "" {
		return ip
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "unknown"
	}
	var v6 string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP.String()
		}
		if v6 == "" {
			v6 = n.IP.String()
		}
	}
	if v6 == "" {
		return "unknown"
	}
	return v6
}
