package bus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Roles of those who connect to keysd's NATS from outside the service.
// Each authenticates with an NKey; its seed is written on first start
// under the data directory (mode 0600). deploy/nats holds the same
// permissions for an external cluster.
const (
	// RoleDriver: resource drivers publish generated keys and may announce
	// removed instances; they ask for and receive intake outcomes, and ask
	// for host certificates (which also need a hosts:sign token).
	RoleDriver = "driver"
	// RoleManager: the resource manager announces removed instances, asks
	// for key substitution (which also needs a keys:private token) and for
	// host certificates (a hosts:sign token).
	RoleManager = "manager"
	// RoleAudit: audit consumers replay the event stream, read-only.
	RoleAudit = "audit"
)

// Roles lists the external roles.
var Roles = []string{RoleDriver, RoleManager, RoleAudit}

// InboxPrefix is the inbox prefix a role's clients must use
// (nats.CustomInboxPrefix): a role may only receive on its own inboxes, so
// nobody reads replies meant for someone else (substituted private keys,
// say).
func InboxPrefix(role string) string { return "_INBOX." + role }

// ServiceConsumers are the durable consumers of the service on the event
// stream (and the cascade consumer of an older keysd, which a newer one
// deletes); nobody else may create or change them.
var ServiceConsumers = []string{"projection-accounts", "projection-infrakeys", "projection-tokens", "projection-cas", LegacyCascadeConsumer, CascadeConsumer, ShredderConsumer}

// Permissions returns what role may publish and subscribe to. Nobody but
// keysd itself may publish on keysd.events.> (write events), touch the
// data keys stream, or administer JetStream.
func Permissions(role string) *server.Permissions {
	inbox := InboxPrefix(role) + ".>"
	switch role {
	case RoleDriver:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{IntakeKeysPrefix + ".*", IntakeRemovedPrefix + ".*", OutcomeSubject, HostCertificateSubject}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	case RoleManager:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{IntakeRemovedPrefix + ".*", OutcomeSubject, SubstituteSubject, HostCertificateSubject}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	case RoleAudit:
		// Audit replays with ordered consumers: ephemeral pull consumers
		// that nats.go names itself, creates with the named form of
		// CONSUMER.CREATE, pulls with MSG.NEXT and deletes when it resets
		// one. The service's durables are off limits: updating one (a new
		// filter, say) would stop a projection or the cascade, pulling
		// from one would steal its deliveries, deleting one would reset
		// it. The unnamed (legacy) CONSUMER.CREATE is not allowed at all:
		// it takes the consumer's name from the request body, where no
		// subject permission can see it.
		api := "$JS.API."
		var deny []string
		for _, c := range ServiceConsumers {
			deny = append(deny,
				api+"CONSUMER.CREATE."+StreamName+"."+c,
				api+"CONSUMER.CREATE."+StreamName+"."+c+".>",
				api+"CONSUMER.MSG.NEXT."+StreamName+"."+c,
				api+"CONSUMER.DELETE."+StreamName+"."+c,
			)
		}
		return &server.Permissions{
			Publish: &server.SubjectPermission{
				Allow: []string{
					api + "INFO",
					api + "STREAM.INFO." + StreamName,
					api + "CONSUMER.CREATE." + StreamName + ".*",
					api + "CONSUMER.CREATE." + StreamName + ".*.>",
					api + "CONSUMER.INFO." + StreamName + ".*",
					api + "CONSUMER.MSG.NEXT." + StreamName + ".*",
					api + "CONSUMER.DELETE." + StreamName + ".*",
				},
				Deny: deny,
			},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	}
	return nil
}

// Access is the authentication of an embedded server that listens: the
// service's own NKey (in memory, new at every start) and one NKey per
// role, whose seeds live in Dir.
type Access struct {
	Dir     string
	service nkeys.KeyPair
	users   []*server.NkeyUser
}

// LoadAccess reads the role seeds in dir, creating those missing (mode
// 0600, dir 0700), and makes a fresh NKey for the service. created lists
// the seed files written now.
func LoadAccess(dir string) (*Access, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("bus: credentials dir: %w", err)
	}
	svc, err := nkeys.CreateUser()
	if err != nil {
		return nil, nil, err
	}
	svcPub, _ := svc.PublicKey()
	a := &Access{Dir: dir, service: svc, users: []*server.NkeyUser{{Nkey: svcPub}}}
	var created []string
	for _, role := range Roles {
		path := SeedFile(dir, role)
		kp, made, err := loadOrCreateSeed(path)
		if err != nil {
			return nil, nil, err
		}
		if made {
			created = append(created, path)
		}
		pub, _ := kp.PublicKey()
		a.users = append(a.users, &server.NkeyUser{Nkey: pub, Permissions: Permissions(role)})
	}
	return a, created, nil
}

// SeedFile is where the NKey seed of role is kept.
func SeedFile(dir, role string) string { return filepath.Join(dir, role+".nk") }

func loadOrCreateSeed(path string) (nkeys.KeyPair, bool, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(data))))
		if err != nil {
			return nil, false, fmt.Errorf("bus: %s: not an NKey seed: %w", path, err)
		}
		return kp, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, false, err
	}
	seed, _ := kp.Seed()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, err
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		return nil, false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, err
	}
	return kp, true, f.Close()
}

// serviceOption authenticates keysd's own connection.
func (a *Access) serviceOption() nats.Option {
	pub, _ := a.service.PublicKey()
	return nats.Nkey(pub, a.service.Sign)
}

// ConnectRole dials url as role with the seed file, with the role's inbox
// prefix: how drivers, the resource manager and audit consumers connect.
func ConnectRole(url, role, seedFile string, opts ...nats.Option) (*nats.Conn, error) {
	auth, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return nil, err
	}
	return nats.Connect(url, append([]nats.Option{auth, nats.CustomInboxPrefix(InboxPrefix(role)), nats.Name("infrakeys-" + role)}, opts...)...)
}
