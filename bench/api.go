package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

// readKeys is how many keys the account of the read phase holds: a
// ListKeys answers all of them.
const readKeys = 10

// measureReads compares authenticated GetKey and ListKeys on keysd with
// the no-op handler, signed alike, with the same load generator.
func (b *bench) measureReads(ctx context.Context, k *process, rep *report) error {
	signer, pub := newKey()
	alice := &httpsig.Signer{KeyID: httpsig.KeyIDFor("alice", pub), Key: signer}
	if _, err := mustDo(ctx, b.admin, "POST", k.URL+"/--admin/accounts", map[string]any{
		"login": "alice", "key": authorizedKey(pub), "name": "key0",
	}, http.StatusCreated); err != nil {
		return err
	}
	for i := 1; i < readKeys; i++ {
		_, p := newKey()
		if _, err := mustDo(ctx, alice, "POST", k.URL+"/alice/keys", map[string]any{"name": fmt.Sprintf("key%d", i), "key": authorizedKey(p)}, http.StatusCreated); err != nil {
			return err
		}
	}

	noop, err := b.startNoop(ctx)
	if err != nil {
		return fmt.Errorf("no-op server: %w", err)
	}
	defer noop.stop()
	b.logf("reads: no-op handler")
	base := b.attack("noop", func(t *vegeta.Target) error {
		return signedTarget(t, alice, "GET", noop.URL+noopPath, nil)
	}, http.StatusOK)

	var n atomic.Uint64
	b.logf("reads: GetKey")
	get := b.attack("GetKey", func(t *vegeta.Target) error {
		name := fmt.Sprintf("key%d", n.Add(1)%readKeys)
		return signedTarget(t, alice, "GET", k.URL+"/alice/keys/"+name, nil)
	}, http.StatusOK)
	b.logf("reads: ListKeys")
	list := b.attack("ListKeys", func(t *vegeta.Target) error {
		return signedTarget(t, alice, "GET", k.URL+"/alice/keys", nil)
	}, http.StatusOK)

	rep.ratio("GetKey, signed (ed25519) vs no-op Echo handler", get, base, 0.6)
	rep.ratio(fmt.Sprintf("ListKeys (%d keys), signed vs no-op Echo handler", readKeys), list, base, 0.6)
	return nil
}

// measureCreates runs CreateKey as fast as the concurrency allows, each
// request for one of several accounts so that writers rarely race on one
// account's version. Each 201 means the key is in the log and in the
// account's document: the next read sees it (read-your-writes).
//
// It also returns where a CreateKey's time goes, from keysd's /metrics.
func (b *bench) measureCreates(ctx context.Context, k *process) (throughput, string, error) {
	accounts := make([]*httpsig.Signer, 4*b.cfg.Concurrency)
	for i := range accounts {
		login := fmt.Sprintf("writer%d", i)
		signer, pub := newKey()
		accounts[i] = &httpsig.Signer{KeyID: httpsig.KeyIDFor(login, pub), Key: signer}
		if _, err := mustDo(ctx, b.admin, "POST", k.URL+"/--admin/accounts", map[string]any{"login": login, "key": authorizedKey(pub)}, http.StatusCreated); err != nil {
			return throughput{}, "", err
		}
	}
	reqBefore, appBefore, err := createTotals(ctx, k.URL)
	if err != nil {
		return throughput{}, "", err
	}
	var n atomic.Uint64
	b.logf("writes: CreateKey")
	res := b.attack("CreateKey", func(t *vegeta.Target) error {
		i := n.Add(1)
		a := int(i) % len(accounts)
		login := fmt.Sprintf("writer%d", a)
		_, pub := newKey()
		body := fmt.Appendf(nil, `{"name":"k%d","key":%q}`, i, authorizedKey(pub))
		return signedTarget(t, accounts[a], "POST", k.URL+"/"+login+"/keys", body)
	}, http.StatusCreated)
	reqAfter, appAfter, err := createTotals(ctx, k.URL)
	if err != nil {
		return res, "", err
	}
	split := createSplit(reqBefore, appBefore, reqAfter, appAfter)
	// Read-your-writes, checked: the last key created by each writer is
	// there.
	for i := range accounts[:min(4, len(accounts))] {
		login := fmt.Sprintf("writer%d", i)
		if _, err := mustDo(ctx, b.admin, "GET", k.URL+"/"+login+"/keys", nil, http.StatusOK); err != nil {
			return res, "", err
		}
	}
	return res, split, nil
}

func authorizedKey(pub ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}
