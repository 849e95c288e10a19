package redis

// Nothing secret reaches Redis, its replicas, its append-only file, its
// backups or the <p>resolved channel in clear: a credential is sealed as
// a whole (its security-code secret), and a challenge's
// pushauth.ChallengeSecrets (the stored request, later the stored bank
// response) are sealed as one value in a key of their own,
// <p>{u:<user>}:sec:<id>, beside the record the scripts read and publish,
// with the same TTL. Sealing is AES-256-GCM with the value's own key as
// associated data (pushauth/seal), so a sealed value copied to another key
// does not open.
//
// Records an earlier version wrote in clear (a credential as plain JSON, a
// challenge with "held" in its record) and values sealed under a previous
// key are sealed again under the current key when they are read, and by
// Reseal; the scripts never publish or return a "held" left in a record.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
)

// challengeRecord is a challenge as the store keeps it.
type challengeRecord struct {
	// Challenge is written with its ChallengeSecrets empty (they are in
	// the secrets key); an earlier version wrote them here in clear.
	pushauth.Challenge
	// Repl is the replication ID of the primary the challenge was created
	// on (set by createScript; see failover.go).
	Repl string `json:"repl,omitempty"`
	// Ack is the op token of an approval waiting for its replicas
	// (replication.go); until it is cleared, readers see the challenge as
	// pending.
	Ack string `json:"_ack,omitempty"`
	// Op is the op token of the call that resolved the challenge, so a
	// call go-redis retries after a lost reply is recognised.
	Op string `json:"_op,omitempty"`
}

// MarshalJSON writes the record without the challenge's secrets.
func (r challengeRecord) MarshalJSON() ([]byte, error) {
	r.ChallengeSecrets = pushauth.ChallengeSecrets{}
	type plain challengeRecord // without this method
	return json.Marshal(plain(r))
}

// sealSecrets seals sec for the secrets key; "" when there is nothing to
// seal (a held request keeps its body in the process only).
func (s *Store) sealSecrets(key string, sec pushauth.ChallengeSecrets) (string, error) {
	b, err := json.Marshal(sec)
	if err != nil {
		return "", fmt.Errorf("redis: encoding the secrets of %s: %w", key, err)
	}
	if string(b) == "{}" {
		return "", nil
	}
	sealed, err := s.sealer.Seal(b, []byte(key))
	if err != nil {
		return "", fmt.Errorf("redis: sealing %s: %w", key, err)
	}
	return string(sealed), nil
}

// readChallenge decodes the record stored under key (with the stored
// request of a record an earlier version wrote in clear).
func (s *Store) readChallenge(key string, b []byte) (*challengeRecord, error) {
	var rec challengeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("redis: decoding %s: %w", key, err)
	}
	return &rec, nil
}

// openSecrets opens the value of the secrets key into rec ("" leaves rec as
// it is).
func (s *Store) openSecrets(key string, sealed []byte, rec *challengeRecord) error {
	if len(sealed) == 0 {
		return nil
	}
	plain, err := s.sealer.Open(sealed, []byte(key))
	if err != nil {
		return fmt.Errorf("redis: opening %s: %w", key, err)
	}
	if err := json.Unmarshal(plain, &rec.ChallengeSecrets); err != nil {
		return fmt.Errorf("redis: decoding %s: %w", key, err)
	}
	return nil
}

// needsReseal reports whether a challenge keeps secrets in clear in its
// record (an earlier version) or sealed under a previous key.
func (s *Store) needsReseal(rec *challengeRecord, sealed []byte) bool {
	if len(sealed) > 0 {
		return !s.sealer.Current(sealed)
	}
	return rec.Held != nil
}

// present is the challenge as readers see it: an approval still waiting
// for its replicas is pending, and a challenge created on a primary that
// has been replaced since is cancelled unless it was closed otherwise
// (see failover.go).
func (s *Store) present(rec *challengeRecord) *pushauth.Challenge {
	c := &rec.Challenge
	if rec.Ack != "" {
		c.Status, c.DecidedAt, c.Fraud = pushauth.StatusPending, time.Time{}, false
	}
	if s.primary.replaced(rec.Repl) && (c.Status == pushauth.StatusPending || c.Status == pushauth.StatusApproved) {
		c.Status = pushauth.StatusCancelled
	}
	return c
}

// resealChallengeScript seals a challenge's secrets under the current key:
// a stored request an earlier version left in the record moves to the
// secrets key, and a value sealed under a previous key is replaced;
// nothing is done when either key changed since it was read.
//
// KEYS[1] challenge record, KEYS[2] its secrets. ARGV[1] the record as
// read, ARGV[2] the secrets as read ("" for none), ARGV[3] the secrets
// sealed under the current key. Returns 1 when resealed.
var resealChallengeScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  return 0
end
local c = cjson.decode(ARGV[1])
if c.held ~= nil then
  c.held = nil
  redis.call('SET', KEYS[1], cjson.encode(c), 'KEEPTTL')
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
return 1
`)

// resealChallenge seals sec, read from the record raw and the secrets
// sealed, under the current key, and reports whether it did.
func (s *Store) resealChallenge(ctx context.Context, rk, sk string, raw, sealed []byte, sec pushauth.ChallengeSecrets) (bool, error) {
	fresh, err := s.sealSecrets(sk, sec)
	if err != nil || fresh == "" {
		return false, err
	}
	n, err := resealChallengeScript.Run(ctx, s.client, []string{rk, sk}, raw, sealed, fresh).Int()
	if err != nil {
		return false, wrap("EVALSHA reseal", rk, err)
	}
	return n == 1, nil
}

// sealCredential is the value of credential c under key: the whole JSON,
// sealed.
func (s *Store) sealCredential(key string, c *pushauth.Credential) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("redis: encoding credential: %w", err)
	}
	sealed, err := s.sealer.Seal(b, []byte(key))
	if err != nil {
		return nil, fmt.Errorf("redis: sealing %s: %w", key, err)
	}
	return sealed, nil
}

// openCredential decodes the value b of key, sealed or, as an earlier
// version wrote it, in clear; a value in clear or under a previous key is
// sealed again under the current one.
func (s *Store) openCredential(ctx context.Context, key string, b []byte) (*pushauth.Credential, error) {
	c, err := s.openCredentialOnly(key, b)
	if err != nil {
		return nil, err
	}
	if !s.sealer.Current(b) {
		_ = s.resealCredential(ctx, key, b, c) // else the next read or Reseal does it
	}
	return c, nil
}

// openCredentialOnly decodes a credential value, sealed or in clear.
func (s *Store) openCredentialOnly(key string, b []byte) (*pushauth.Credential, error) {
	plain := b
	if seal.IsSealed(b) {
		var err error
		if plain, err = s.sealer.Open(b, []byte(key)); err != nil {
			return nil, fmt.Errorf("redis: opening %s: %w", key, err)
		}
	}
	var c pushauth.Credential
	if err := json.Unmarshal(plain, &c); err != nil {
		return nil, fmt.Errorf("redis: decoding %s: %w", key, err)
	}
	return &c, nil
}

// casScript replaces a value unless it changed since it was read.
// KEYS[1]; ARGV[1] the value as read ("": there was none), ARGV[2] the new
// value. Returns 1 when replaced.
var casScript = goredis.NewScript(`
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
`)

func (s *Store) resealCredential(ctx context.Context, key string, raw []byte, c *pushauth.Credential) error {
	sealed, err := s.sealCredential(key, c)
	if err != nil {
		return err
	}
	if err := casScript.Run(ctx, s.client, []string{key}, raw, sealed).Err(); err != nil {
		return wrap("EVALSHA reseal", key, err)
	}
	return nil
}
