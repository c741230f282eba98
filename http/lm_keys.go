package http

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// infraKeyView is an infrastructure key as LM shows it. privateKey appears
// only when asked for by a caller allowed to read private material.
type infraKeyView struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	Description       string `json:"description"`
	PublicKey         string `json:"publicKey"`
	PrivateKey        string `json:"privateKey,omitempty"`
	Fingerprint       string `json:"fingerprint"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	Scope             string `json:"scope"`
	InstanceID        string `json:"instanceId,omitempty"`
	// Expires and Expired appear only for keys that expire.
	Expires *time.Time `json:"expires,omitempty"`
	Expired *bool      `json:"expired,omitempty"`
	// LastUsed is when the key's private half was last released (read
	// or substituted), to within the last-use precision; absent when
	// never.
	LastUsed *time.Time `json:"lastUsed,omitempty"`
}

// viewInfraKey shows k as it is at now: expired from its expiry on, even
// before its KeyExpired is recorded.
func (s *Server) viewInfraKey(k *domain.InfraKey, now time.Time) infraKeyView {
	v := infraKeyView{
		ID: k.ID, Name: k.Name, Description: k.Description, PublicKey: k.PublicKey,
		Fingerprint: k.Fingerprint, FingerprintSHA256: k.FingerprintSHA256, Scope: k.Scope, InstanceID: k.InstanceID,
		LastUsed: domain.LastUsed(s.cfg.Uses, k.UseID()),
	}
	v.Expires, v.Expired = expiryView(k.Expires, k.ExpiredAt(now))
	return v
}

// includePrivate reads ?includePrivateKey and checks the caller may.
func includePrivate(c echo.Context) (bool, error) {
	switch c.QueryParam("includePrivateKey") {
	case "", "false":
		return false, nil
	case "true":
		if !lmCallerOf(c).has(domain.RolePrivateRead) {
			return false, domain.Errorf(domain.EFORBIDDEN, "includePrivateKey needs the %s role", domain.RolePrivateRead)
		}
		return true, nil
	default:
		// The value is not echoed: errors never repeat what a client sent.
		return false, domain.Errorf(domain.EINVALID, "includePrivateKey must be true or false")
	}
}

// views renders keys, revealing private halves when include is set (each
// reveal is audited, and shows the key as revealed: it may have changed
// since it was listed). A key deleted meanwhile is left out. An expired
// key's private half is not released (RevealPrivate): asked for one key,
// that is refused (single); in a list, the key is shown without it, with
// "expired": true, rather than the whole list refused.
func (s *Server) views(c echo.Context, keys []domain.InfraKey, include, single bool) ([]infraKeyView, error) {
	now := s.cfg.Now()
	out := make([]infraKeyView, 0, len(keys))
	for i := range keys {
		if !include || (!single && keys[i].ExpiredAt(now)) {
			out = append(out, s.viewInfraKey(&keys[i], now))
			continue
		}
		k, pem, err := s.cfg.InfraKeys.RevealPrivate(c.Request().Context(), &keys[i], domain.PurposeInclude, s.meta(c))
		if domain.ErrorCode(err) == domain.ENOTFOUND {
			continue
		}
		if !single && errors.Is(err, domain.ErrKeyExpired) {
			// It expired since the check above.
			out = append(out, s.viewInfraKey(&keys[i], s.cfg.Now()))
			continue
		}
		if err != nil {
			return nil, err
		}
		v := s.viewInfraKey(k, now)
		v.PrivateKey = string(pem)
		out = append(out, v)
	}
	return out, nil
}

// keyMaterial reads publicKey, privateKey and generate from a body.
func keyMaterial(in fields) (domain.KeyMaterial, error) {
	var km domain.KeyMaterial
	var err error
	if km.PublicKey, _, err = in.str("publicKey"); err != nil {
		return km, err
	}
	if km.PrivateKey, _, err = in.str("privateKey"); err != nil {
		return km, err
	}
	if km.Generate, _, err = in.str("generate"); err != nil {
		return km, err
	}
	return km, nil
}

// handleSharedCreate serves POST /api/resource-manager/infrastructure-keys/shared.
// Body: {name, description?, expires?, publicKey?, privateKey?} or {name,
// description?, expires?, generate: "ed25519"|"rsa-3072"|"rsa-4096"|"ecdsa-p256"|"ecdsa-p384"}.
func (s *Server) handleSharedCreate(c echo.Context) error {
	in, err := lmBody(c)
	if err != nil {
		return err
	}
	name, _, err := in.str("name")
	if err != nil {
		return err
	}
	desc, _, err := in.str("description")
	if err != nil {
		return err
	}
	km, err := keyMaterial(in)
	if err != nil {
		return err
	}
	expires, err := expiresOf(in)
	if err != nil {
		return err
	}
	k, err := s.cfg.InfraKeys.CreateExpiringShared(c.Request().Context(), name, desc, km, expires, s.meta(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", lmPrefix+"/shared/"+url.PathEscape(k.Name))
	return lmWrite(c, http.StatusCreated, s.viewInfraKey(k, s.cfg.Now()))
}

// handleSharedList serves GET /api/resource-manager/infrastructure-keys/shared,
// sorted by name: every key, or with ?limit=N one page of at most N keys
// after the name ?after= (exclusive), and a Link rel="next" header to the
// next page while more remain. LM itself does not page; a client that
// sends neither parameter gets every key, as from LM.
func (s *Server) handleSharedList(c echo.Context) error {
	include, err := includePrivate(c)
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	keys, err := s.cfg.InfraKeys.ListShared(c.Request().Context())
	if err != nil {
		return err
	}
	if after := c.QueryParam("after"); after != "" {
		i, _ := slices.BinarySearchFunc(keys, after, func(k domain.InfraKey, name string) int { return strings.Compare(k.Name, name) })
		for i < len(keys) && keys[i].Name == after {
			i++
		}
		keys = keys[i:]
	}
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
		next := url.Values{"limit": {strconv.Itoa(limit)}, "after": {keys[limit-1].Name}}
		if include {
			next.Set("includePrivateKey", "true")
		}
		c.Response().Header().Set("Link", "<"+lmPrefix+"/shared?"+next.Encode()+`>; rel="next"`)
	}
	out, err := s.views(c, keys, include, false)
	if err != nil {
		return err
	}
	return lmWrite(c, http.StatusOK, out)
}

// maxPageLimit bounds ?limit= of a paged list.
const maxPageLimit = 1000

// pageLimit reads ?limit=: 0 when absent (no paging).
func pageLimit(c echo.Context) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageLimit {
		return 0, domain.Errorf(domain.EINVALID, "limit must be a whole number from 1 to %d, not %q", maxPageLimit, v)
	}
	return n, nil
}

// handleSharedGet serves GET /api/resource-manager/infrastructure-keys/shared/:name
// and GET /api/resource-manager/infrastructure-keys/:name.
func (s *Server) handleSharedGet(c echo.Context) error {
	include, err := includePrivate(c)
	if err != nil {
		return err
	}
	k, err := s.cfg.InfraKeys.GetShared(c.Request().Context(), pathParam(c, "name"))
	if err != nil {
		return err
	}
	out, err := s.views(c, []domain.InfraKey{*k}, include, true)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		return domain.Errorf(domain.ENOTFOUND, "infrastructure key %s does not exist", k.Name)
	}
	return lmWrite(c, http.StatusOK, out[0])
}

// handleSharedUpdate serves PUT /api/resource-manager/infrastructure-keys/shared/:name.
// Body: {description?, publicKey?, privateKey?, generate?, expires?}; LM's
// CLI also sends id and name, which must be the key's own. Fields left out
// are kept.
func (s *Server) handleSharedUpdate(c echo.Context) error {
	in, err := lmBody(c)
	if err != nil {
		return err
	}
	id, _, err := in.str("id")
	if err != nil {
		return err
	}
	newName, _, err := in.str("name")
	if err != nil {
		return err
	}
	desc, hasDesc, err := in.str("description")
	if err != nil {
		return err
	}
	km, err := keyMaterial(in)
	if err != nil {
		return err
	}
	expires, err := expiresOf(in)
	if err != nil {
		return err
	}
	var descPtr *string
	if hasDesc {
		descPtr = &desc
	}
	if _, err := s.cfg.InfraKeys.UpdateShared(c.Request().Context(), pathParam(c, "name"), id, newName, descPtr, expires, km, s.meta(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleSharedDelete serves DELETE /api/resource-manager/infrastructure-keys/shared/:name.
// The key's private half is destroyed with it.
func (s *Server) handleSharedDelete(c echo.Context) error {
	if err := s.cfg.InfraKeys.DeleteShared(c.Request().Context(), pathParam(c, "name"), s.meta(c)); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// handleInstanceKeys serves GET /api/resource-manager/infrastructure-keys/instances/:instanceId:
// the keys drivers generated for an instance, sorted by name.
func (s *Server) handleInstanceKeys(c echo.Context) error {
	include, err := includePrivate(c)
	if err != nil {
		return err
	}
	keys, err := s.cfg.InfraKeys.ListInstance(c.Request().Context(), pathParam(c, "instanceId"))
	if err != nil {
		return err
	}
	out, err := s.views(c, keys, include, false)
	if err != nil {
		return err
	}
	return lmWrite(c, http.StatusOK, out)
}

// handleInstanceRemove serves DELETE /api/resource-manager/infrastructure-keys/instances/:instanceId:
// the resource manager announces a removed instance, for systems not on
// the bus. The InstanceRemoved is recorded before the answer; the cascade
// deletes the instance's keys right after, hence 202. Announcing it again
// answers the same and records nothing.
func (s *Server) handleInstanceRemove(c echo.Context) error {
	in, err := s.cfg.InfraKeys.RemoveInstance(c.Request().Context(), pathParam(c, "instanceId"), s.meta(c))
	if err != nil {
		return err
	}
	return lmWrite(c, http.StatusAccepted, map[string]any{"instanceId": in.ID, "removed": true, "eventId": in.RemovedBy})
}

// handleSubstitute serves POST /api/resource-manager/infrastructure-keys/substitute:
// key properties ({"type": "key", "value": name}) in properties and
// privateProperties are replaced by the keys themselves, for a request to
// a driver. Body: {properties, privateProperties?, instanceId?}.
func (s *Server) handleSubstitute(c echo.Context) error {
	in, err := lmBody(c)
	if err != nil {
		return err
	}
	instanceID, _, err := in.str("instanceId")
	if err != nil {
		return err
	}
	sections := map[string]map[string]any{}
	for _, sec := range []string{"properties", "privateProperties"} {
		props, ok, err := in.object(sec)
		if err != nil {
			return err
		}
		if ok {
			sections[sec] = props
		}
	}
	out, err := s.cfg.InfraKeys.Substitute(c.Request().Context(), sections, instanceID, s.meta(c))
	if err != nil {
		return err
	}
	return lmWrite(c, http.StatusOK, out)
}
