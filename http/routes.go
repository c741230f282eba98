package http

import (
	"net/http"

	"github.com/infrakeys/infrakeys/domain"
)

// routes registers every route of keysd in one place.
func (s *Server) routes() {
	e := s.echo
	e.Use(s.requestContext, s.recoverPanic)

	// Unauthenticated.
	e.GET("/--ping", s.handlePing)
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	e.Match([]string{http.MethodGet, http.MethodHead}, "/openapi.yaml", s.handleOpenAPI)
	e.GET("/--cas/:ca", s.handleCAPublic)
	if s.cfg.Metrics != nil {
		e.GET("/metrics", s.handleMetrics)
	}

	// CloudAPI account keys. "my" stands for the signer.
	keys := e.Group("", s.authenticate)
	keys.Match([]string{http.MethodGet, http.MethodHead}, "/:login/keys", s.handleKeyList)
	keys.POST("/:login/keys", s.handleKeyCreate)
	keys.Match([]string{http.MethodGet, http.MethodHead}, "/:login/keys/:key", s.handleKeyGet)
	keys.DELETE("/:login/keys/:key", s.handleKeyDelete)
	keys.POST("/:login/keys/:key/certificates", s.handleCertificateSign)
	keys.GET("/:login/keys/:key/certificates", s.handleCertificateList)
	keys.GET("/:login/certificates", s.handleCertificateList)
	keys.DELETE("/:login/certificates/:serial", s.handleCertificateRevoke)

	// Lifecycle Manager infrastructure keys: bearer tokens
	// with roles, or operators signing with HTTP Signature.
	lm := e.Group(lmPrefix, s.authenticateLM)
	read, manage, private := requireRole(domain.RoleKeysRead), requireRole(domain.RoleKeysManage), requireRole(domain.RolePrivateRead)
	lm.POST("/shared", s.handleSharedCreate, manage)
	lm.GET("/shared", s.handleSharedList, read)
	lm.GET("/shared/:name", s.handleSharedGet, read)
	lm.PUT("/shared/:name", s.handleSharedUpdate, manage)
	lm.DELETE("/shared/:name", s.handleSharedDelete, manage)
	lm.GET("/instances/:instanceId", s.handleInstanceKeys, read)
	lm.DELETE("/instances/:instanceId", s.handleInstanceRemove, manage)
	lm.POST("/instances/:instanceId/keys/:name/certificate", s.handleHostCertificateSign, requireRole(domain.RoleHostsSign))
	lm.POST("/substitute", s.handleSubstitute, private)
	lm.GET("/:name", s.handleSharedGet, read)

	// Operators.
	admin := e.Group("/--admin", s.authenticate, s.requireOperator)
	admin.POST("/accounts", s.handleAccountCreate)
	admin.GET("/accounts/:login", s.handleAccountGet)
	admin.PUT("/accounts/:login/policy", s.handleAccountPolicy)
	admin.POST("/tokens", s.handleTokenCreate)
	admin.GET("/tokens", s.handleTokenList)
	admin.DELETE("/tokens/:id", s.handleTokenRevoke)
	admin.POST("/master-key/rewrap", s.handleMasterKeyRewrap)
	admin.GET("/cas", s.handleCAList)
	admin.POST("/cas/:ca", s.handleCACreateKey)
	admin.DELETE("/cas/:ca/keys/:id", s.handleCARetireKey)
	admin.GET("/projections", s.handleProjectionList)
	admin.POST("/projections/:name/rebuild", s.handleProjectionRebuild)
}
