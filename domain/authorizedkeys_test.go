package domain_test

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/domain"
)

// Keys as their .pub files hold them, comment included.
const (
	akKey1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJvemp1t5NAML/mVbmdhCcOzejM78QsXrbu5dGZBln41"
	akKey2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB5fKGZt2rTfIgItFV443Rnvj4wWKYMME3Nw1VdymBEg"
	akCA   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOVCH2RvkbSbZOyRmVh5l4far3sVOTJnaEyVkzjZvMBr"
)

func TestAuthorizedKeys(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	key := func(name, line string) domain.AccountKey {
		return domain.AccountKey{Name: name, Key: line + " submitted-comment"}
	}
	expiring := func(k domain.AccountKey, expires *time.Time) domain.AccountKey { k.Expires = expires; return k }
	ca := &domain.CA{Name: domain.CAUser, Keys: []domain.CAKey{
		{ID: "01RETIRED", PublicKey: akKey2 + " keysd-user-ca", Retired: now.Add(-time.Hour)},
		{ID: "01TRUSTED", PublicKey: akCA + " keysd-user-ca"},
	}}
	for _, tc := range []struct {
		name string
		keys []domain.AccountKey
		ca   *domain.CA
		want string
	}{
		{"NoKeys", nil, nil, ""},
		{"NameIsTheComment", []domain.AccountKey{key("laptop", akKey1), key("my desk #2", akKey2)}, nil,
			akKey1 + " laptop\n" + akKey2 + " my desk #2\n"},
		{"ExpiryTimeInUTC", []domain.AccountKey{expiring(key("laptop", akKey1), at(90*time.Minute+5*time.Second))}, nil,
			`expiry-time="20261203133005Z" ` + akKey1 + " laptop\n"},
		{"ExpiryTimeOfAnotherZone", []domain.AccountKey{expiring(key("laptop", akKey1),
			func() *time.Time { t := now.Add(time.Hour).In(time.FixedZone("UTC+2", 7200)); return &t }())}, nil,
			`expiry-time="20261203130000Z" ` + akKey1 + " laptop\n"},
		{"ExpiredLeftOut", []domain.AccountKey{expiring(key("old", akKey1), at(0)), key("laptop", akKey2)}, nil,
			akKey2 + " laptop\n"},
		{"ExpiredEventLeftOut", []domain.AccountKey{func() domain.AccountKey { k := key("old", akKey1); k.Expired = true; return k }()}, nil, ""},
		{"TrustedCAKeys", []domain.AccountKey{key("laptop", akKey1)}, ca,
			akKey1 + " laptop\ncert-authority " + akCA + " keysd user CA 01TRUSTED\n"},
		{"CAWithoutKeys", nil, &domain.CA{Name: domain.CAUser}, ""},
		{"NewlineInName", []domain.AccountKey{key("a\nssh-ed25519 AAAA evil", akKey1)}, nil,
			akKey1 + " a?ssh-ed25519 AAAA evil\n"},
		{"InvisibleInName", []domain.AccountKey{key("a\r\u2028\u2029\u0085\u200bb\xff", akKey1)}, nil,
			akKey1 + " a?????b?\n"},
		{"ReplacementCharacterKept", []domain.AccountKey{key("a\uFFFDb", akKey1)}, nil, akKey1 + " a\uFFFDb\n"},
		{"MalformedKeyLeftOut", []domain.AccountKey{{Name: "bad", Key: "ssh-ed25519"}, key("laptop", akKey1)}, nil, akKey1 + " laptop\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := domain.AuthorizedKeys(&domain.Account{Login: "alice", Keys: tc.keys}, tc.ca, now)
			if got != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
			// Every line is one key sshd reads, with the options it knows.
			sc := bufio.NewScanner(strings.NewReader(got))
			for sc.Scan() {
				if _, _, _, rest, err := ssh.ParseAuthorizedKey(sc.Bytes()); err != nil || len(rest) != 0 {
					t.Errorf("line %q: %v (rest %q)", sc.Text(), err, rest)
				}
			}
		})
	}
}
