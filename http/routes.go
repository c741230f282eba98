package http

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// routes registers every route of keysd in one place.
//
// Authentication is middleware of each route, never of a group: Echo gives
// a group with middleware catch-all routes ("/*") so that the middleware
// runs for unknown paths too, and a catch-all wins over the router's own
// method-not-allowed answer. A method a path does not have would then
// answer 404 (or 401, from the group's authentication), and every unknown
// path would be labelled "/*" in the metrics. Without catch-alls, a path
// no route has answers 404 and a method its route lacks answers 405 with
// Allow, both before authentication: the routes are public (/openapi.yaml).
// Groups below only share a prefix; keep them free of Use and of
// middleware arguments.
func (s *Server) routes() {
	e := s.echo
	e.Use(s.requestContext, s.recoverPanic)

	// Unauthenticated.
	e.GET("/--ping", s.handlePing)
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	e.Match([]string{http.MethodGet, http.MethodHead}, "/openapi.yaml", s.handleOpenAPI)
	e.GET("/--cas/:ca", s.handleCAPublic)
	// An account's public keys for sshd's AuthorizedKeysCommand.
	e.Match([]string{http.MethodGet, http.MethodHead}, "/:login/authorized_keys", s.handleAuthorizedKeys)
	e.GET("/--krl", s.handleKRL)
	if s.cfg.Metrics != nil {
		e.GET("/metrics", s.handleMetrics)
	}

	// CloudAPI account keys. "my" stands for the signer.
	auth := s.authenticate
	e.Match([]string{http.MethodGet, http.MethodHead}, "/:login/keys", s.handleKeyList, auth)
	e.POST("/:login/keys", s.handleKeyCreate, auth)
	// /:login/keys/:key and /:login/keys/:key/certificates, as one
	// wildcard route each (keyRoute): real clients send SHA256
	// fingerprints with their '/' unescaped.
	// Each authenticates once it knows the path names an operation, so
	// that a method the path lacks is a 405 before authentication, as on
	// every other route.
	e.Match([]string{http.MethodGet, http.MethodHead}, "/:login/keys/*", keyRoute(auth(s.handleKeyGet), auth(s.handleCertificateList)))
	e.DELETE("/:login/keys/*", keyRoute(auth(s.handleKeyDelete), nil))
	e.POST("/:login/keys/*", keyRoute(nil, auth(s.handleCertificateSign)))
	e.OPTIONS("/:login/keys/*", keyRoute(keyOptions("OPTIONS, DELETE, GET, HEAD"), keyOptions("OPTIONS, GET, HEAD, POST")))
	e.GET("/:login/certificates", s.handleCertificateList, auth)
	e.DELETE("/:login/certificates/:serial", s.handleCertificateRevoke, auth)

	// Lifecycle Manager infrastructure keys: bearer tokens
	// with roles, or operators signing with HTTP Signature.
	lm, lmAuth := e.Group(lmPrefix), s.authenticateLM
	read, manage, private := requireRole(domain.RoleKeysRead), requireRole(domain.RoleKeysManage), requireRole(domain.RolePrivateRead)
	lm.POST("/shared", s.handleSharedCreate, lmAuth, manage)
	lm.GET("/shared", s.handleSharedList, lmAuth, read)
	lm.GET("/shared/:name", s.handleSharedGet, lmAuth, read)
	lm.PUT("/shared/:name", s.handleSharedUpdate, lmAuth, manage)
	lm.DELETE("/shared/:name", s.handleSharedDelete, lmAuth, manage)
	lm.GET("/instances/:instanceId", s.handleInstanceKeys, lmAuth, read)
	lm.DELETE("/instances/:instanceId", s.handleInstanceRemove, lmAuth, manage)
	lm.POST("/instances/:instanceId/keys/:name/certificate", s.handleHostCertificateSign, lmAuth, requireRole(domain.RoleHostsSign))
	lm.POST("/substitute", s.handleSubstitute, lmAuth, private)
	lm.GET("/:name", s.handleSharedGet, lmAuth, read)

	// Operators.
	admin, operator := e.Group("/--admin"), s.requireOperator
	admin.POST("/accounts", s.handleAccountCreate, auth, operator)
	admin.GET("/accounts/:login", s.handleAccountGet, auth, operator)
	admin.PUT("/accounts/:login/policy", s.handleAccountPolicy, auth, operator)
	admin.POST("/tokens", s.handleTokenCreate, auth, operator)
	admin.GET("/tokens", s.handleTokenList, auth, operator)
	admin.DELETE("/tokens/:id", s.handleTokenRevoke, auth, operator)
	admin.POST("/master-key/rewrap", s.handleMasterKeyRewrap, auth, operator)
	admin.GET("/cas", s.handleCAList, auth, operator)
	admin.POST("/cas/:ca", s.handleCACreateKey, auth, operator)
	admin.DELETE("/cas/:ca/keys/:id", s.handleCARetireKey, auth, operator)
	admin.GET("/projections", s.handleProjectionList, auth, operator)
	admin.POST("/projections/:name/rebuild", s.handleProjectionRebuild, auth, operator)
}

// keyRoute serves /:login/keys/<rest>, where rest is a key (a name or a
// fingerprint; key handles it) or a key followed by /certificates (certs
// handles it), with the key as the "key" parameter and the route template
// (for metrics) as if each had a route of its own. Key names hold no '/',
// but a SHA256 fingerprint may, and triton-go and smartdc put it in the
// path unescaped: a route with a :key segment followed by /certificates
// would no longer match such a fingerprint alone.
func keyRoute(key, certs echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		login, rest := c.Param("login"), c.Param("*")
		h, path := key, "/:login/keys/:key"
		if k, ok := strings.CutSuffix(rest, "/certificates"); ok && k != "" && (certs != nil || key == nil) {
			h, path, rest = certs, "/:login/keys/:key/certificates", k
		}
		if h == nil {
			allow := "OPTIONS, DELETE, GET, HEAD"
			if path != "/:login/keys/:key" {
				allow = "OPTIONS, GET, HEAD, POST"
			}
			c.Response().Header().Set(echo.HeaderAllow, allow)
			return echo.ErrMethodNotAllowed
		}
		c.SetPath(path)
		c.SetParamNames("login", "key")
		c.SetParamValues(login, rest)
		return h(c)
	}
}

// keyOptions answers OPTIONS on a key's paths with the methods it has.
func keyOptions(allow string) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderAllow, allow)
		return c.NoContent(http.StatusNoContent)
	}
}
