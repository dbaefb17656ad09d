// Package agentserver is the manager side of the agent protocol (agents/protocol): an HTTPS service,
// run by the manager, that agents register with, pull their Plan from, report status to and
// download artifacts from.
//
//	agent                                    Server                                   management cluster
//	  POST /v1/register {token, CSR}   ──►   token burned (delete w/ precondition) ──► Secret basalt-token-<id>
//	                                   ◄──   client cert CN=basalt:host:<ns>/<host>    Host.status.agent
//	  GET  /v1/plan?hash=H&wait=30s    ──►   watch on Plan Secrets ◄──────────────────  Secret basalt-plan-<host>
//	                                   ◄──   200 {hash, plan} | 304 | 404                (planstore.StorePlan)
//	  POST /v1/status {Status}         ──►   optimistic-lock patches ─────────────────► Host.status.{agent,hardware}
//	                                                                                     Machine.status.{planHash,components}
//	  GET  /v1/artifacts/<sha256>      ──►   artifactcache.Cache: Dir/sha256/<hex>, else Upstream once, verified
//
// # Security model
//
//   - TLS 1.3 only. The serving certificate is signed by the serving CA (Secret
//     basalt-agent-api-serving-ca); agents pin that CA, which they receive with their token.
//   - Registration is the only call without a client certificate. It needs a bootstrap token
//     (package tokens): random, stored hashed, valid for TokenTTL (15 minutes by default), single
//     use. Unknown, wrong, expired, reused and revoked tokens all get the same 401.
//   - Every other call needs a client certificate signed by the agent CA (Secret basalt-agent-ca),
//     with the clientAuth usage only, Organization protocol.IdentityOrganization and CommonName
//     protocol.IdentityPrefix + "<namespace>/<host>". The CSR's subject is ignored: the identity is
//     set by the server from the token's Host. The certificate also carries the Host's UID (URI SAN
//     urn:basalt:host-uid:<uid>): a Host deleted and re-created under the same name does not accept
//     the old agent.
//   - A host reads only its own Plan and writes only its own status: the Host comes from the
//     certificate, never from the request (an optional ?host= that names another Host is a 403).
//   - Request bodies are bounded (protocol.MaxRequestBytes → 413), decoded strictly (unknown fields
//     and trailing data → 400) and validated (lengths, counts, formats → 400). Bad input never
//     crashes the server; FuzzDecodeStatus and FuzzDecodeRegister keep it so.
//   - Artifacts are addressed by sha256 and only those listed in a registered artifact set or a
//     stored Plan can be fetched; bytes from upstream that do not match are never stored or served.
//
// # Storage
//
// The PKI lives in three kubernetes.io/tls Secrets in the manager's namespace (AgentCASecret,
// ServingCASecret, ServingCertSecret), created on first start and kept afterwards (bootstrap/pki's
// EnsureCA never replaces a CA). A Plan is a Secret per Host in the Host's namespace,
// written by controllers through package agents/planstore (its doc says which controller writes
// in which Host state); the server watches those Secrets (by label) and never writes them.
// Artifacts are served from package agents/artifactcache.
//
// # Running it
//
//	srv := &agentserver.Server{
//		Namespace: "basalt-system", Addresses: []string{"172.28.0.1"},
//		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Config: mgr.GetConfig(),
//		Artifacts: cache,
//	}
//	if err := mgr.Add(srv); err != nil { ... }   // Start(ctx) = ListenAndServe(ctx)
//
// Metrics (basalt_agent_api_*) are registered in controller-runtime's registry.
package agentserver
