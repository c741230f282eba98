package http

import (
	"net/http"
)

// routes registers every route of keysd in one place.
func (s *Server) routes() {
	e := s.echo
	e.Use(s.requestContext)

	// Unauthenticated.
	e.GET("/--ping", s.handlePing)
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	e.GET("/openapi.yaml", s.handleOpenAPI)

	// CloudAPI account keys (FACTS.md §1). "my" stands for the signer.
	keys := e.Group("", s.authenticate)
	keys.Match([]string{http.MethodGet, http.MethodHead}, "/:login/keys", s.handleKeyList)
	keys.POST("/:login/keys", s.handleKeyCreate)
	keys.Match([]string{http.MethodGet, http.MethodHead}, "/:login/keys/:key", s.handleKeyGet)
	keys.DELETE("/:login/keys/:key", s.handleKeyDelete)

	// Operators.
	admin := e.Group("/--admin", s.authenticate, s.requireOperator)
	admin.POST("/accounts", s.handleAccountCreate)
	admin.GET("/accounts/:login", s.handleAccountGet)
	admin.PUT("/accounts/:login/policy", s.handleAccountPolicy)
	admin.GET("/projections", s.handleProjectionList)
	admin.POST("/projections/:name/rebuild", s.handleProjectionRebuild)
}
