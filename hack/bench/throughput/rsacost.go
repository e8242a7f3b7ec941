package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"slices"
	"time"
)

// rsaCost measures one RSA-2048 PKCS #1 v1.5 signature plus one decryption
// on this machine, the private-key work an enrollment adds to what the
// ceiling does (the goal 2 allows exactly that): the median of
// rounds runs, so that a busy moment does not count.
func rsaCost(rounds int) (time.Duration, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return 0, err
	}
	digest := sha256.Sum256([]byte("scep-operator bench"))
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, &key.PublicKey, digest[:16]) //nolint:staticcheck // SCEP replies use v1.5 key transport: what the operator decrypts
	if err != nil {
		return 0, err
	}
	times := make([]time.Duration, rounds)
	for i := range times {
		t0 := time.Now()
		if _, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:]); err != nil {
			return 0, err
		}
		if _, err := rsa.DecryptPKCS1v15(rand.Reader, key, ct); err != nil { //nolint:staticcheck // idem
			return 0, err
		}
		times[i] = time.Since(t0)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}
