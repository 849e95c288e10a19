package redis

// Nothing secret reaches Redis, its replicas, its append-only file, its
// backups or the <p>resolved channel in clear: a credential is sealed as
// a whole (its security-code secret), a challenge keeps its
// pushauth.ChallengeSecrets (the stored request, later the stored bank
// response) sealed in one "sealed" field beside the fields the scripts
// read, and the scripts strip that field from everything they publish or
// return. Sealing is AES-256-GCM with the record's key as associated data
// (pushauth/seal), so a sealed value copied into another record does not
// open.
//
// Records an earlier version wrote in clear (a credential as plain JSON, a
// challenge with "held") and records sealed under a previous key are
// sealed again under the current key when they are read, and by Reseal.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/seal"
)

// challengeRecord is a challenge as the store keeps it.
type challengeRecord struct {
	// Challenge is written with its ChallengeSecrets empty; an earlier
	// version wrote them here in clear.
	pushauth.Challenge
	// Sealed is the challenge's ChallengeSecrets as JSON, sealed for the
	// record's key; absent when there are none.
	Sealed []byte `json:"sealed,omitempty"`
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

// encodeChallenge is the record of c under key: its secrets sealed.
func (s *Store) encodeChallenge(key string, c *pushauth.Challenge) ([]byte, error) {
	rec := challengeRecord{Challenge: *c}
	rec.ChallengeSecrets = pushauth.ChallengeSecrets{}
	sealed, err := s.sealSecrets(key, c.ChallengeSecrets)
	if err != nil {
		return nil, err
	}
	rec.Sealed = sealed
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("redis: encoding challenge %s: %w", c.ID, err)
	}
	return b, nil
}

// sealSecrets seals sec for the record key; nil when there is nothing to
// seal (a held request keeps its body in the process only).
func (s *Store) sealSecrets(key string, sec pushauth.ChallengeSecrets) ([]byte, error) {
	b, err := json.Marshal(sec)
	if err != nil {
		return nil, fmt.Errorf("redis: encoding the secrets of %s: %w", key, err)
	}
	if string(b) == "{}" {
		return nil, nil
	}
	sealed, err := s.sealer.Seal(b, []byte(key))
	if err != nil {
		return nil, fmt.Errorf("redis: sealing %s: %w", key, err)
	}
	return sealed, nil
}

// readChallenge decodes the record stored under key, opening its secrets
// when withSecrets is set (otherwise they are left out, also when an
// earlier version wrote them in clear).
func (s *Store) readChallenge(key string, b []byte, withSecrets bool) (*challengeRecord, error) {
	var rec challengeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("redis: decoding %s: %w", key, err)
	}
	if !withSecrets {
		rec.ChallengeSecrets = pushauth.ChallengeSecrets{}
		return &rec, nil
	}
	if len(rec.Sealed) > 0 {
		plain, err := s.sealer.Open(rec.Sealed, []byte(key))
		if err != nil {
			return nil, fmt.Errorf("redis: opening the sealed part of %s: %w", key, err)
		}
		if err := json.Unmarshal(plain, &rec.ChallengeSecrets); err != nil {
			return nil, fmt.Errorf("redis: decoding the sealed part of %s: %w", key, err)
		}
	}
	return &rec, nil
}

// needsReseal reports whether a record read with its secrets keeps them in
// clear (an earlier version) or sealed under a previous key.
func (s *Store) needsReseal(rec *challengeRecord) bool {
	if len(rec.Sealed) > 0 {
		return !s.sealer.Current(rec.Sealed)
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

// resealChallengeScript replaces a challenge's secrets (clear or sealed)
// by a value sealed under the current key, unless the record changed since
// it was read.
//
// KEYS[1] challenge record. ARGV[1] the record as read, ARGV[2] the sealed
// secrets (base64). Returns 1 when resealed.
var resealChallengeScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local c = cjson.decode(ARGV[1])
c.held = nil
c.sealed = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(c), 'KEEPTTL')
return 1
`)

// resealChallenge seals rec's secrets under the current key in place of
// raw, the record as read from key.
func (s *Store) resealChallenge(ctx context.Context, key string, raw []byte, rec *challengeRecord) error {
	sealed, err := s.sealSecrets(key, rec.ChallengeSecrets)
	if err != nil {
		return err
	}
	if err := resealChallengeScript.Run(ctx, s.client, []string{key}, raw, base64.StdEncoding.EncodeToString(sealed)).Err(); err != nil {
		return wrap("EVALSHA reseal", key, err)
	}
	return nil
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
// KEYS[1]; ARGV[1] the value as read, ARGV[2] the new value. Returns 1 when
// replaced.
var casScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
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
