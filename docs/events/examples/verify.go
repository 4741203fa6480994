// Verify a Rail event webhook in Go with the standard library only.
//
// Rail signs each event POST twice (Standard Webhooks): "v1", an HMAC-SHA256 with your
// client's own secret ("whsec_...", printed by `rail certs issue`), and "v1a", an
// ed25519 signature with Rail's public key ("whpk_...", GET /api/v1/webhook-key). Either
// key works here.
//
// Command line (what Rail's tests run): go run verify.go KEY HEADERS.json BODY
// prints "ok <type> <id>" and exits 0 if the request verifies, else exits 1.
package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const tolerance = 5 * time.Minute

// Event is the part of the payload every event type has (docs/events.md).
type Event struct {
	Type      string                 `json:"type"`
	ID        string                 `json:"id"`
	Timestamp string                 `json:"timestamp"`
	Client    string                 `json:"client"`
	MessageID string                 `json:"message_id"`
	RequestID *string                `json:"request_id"`
	Tag       *string                `json:"tag"`
	Metadata  map[string]string      `json:"metadata"`
	Recipient *string                `json:"recipient"`
	Sandbox   bool                   `json:"sandbox"`
	Details   map[string]interface{} `json:"details"`
}

// VerifyRailEvent returns the event if Rail signed these exact body bytes (read the raw
// body first, then verify, then parse) less than five minutes ago.
func VerifyRailEvent(key string, header http.Header, body []byte) (*Event, error) {
	id := header.Get("webhook-id")
	stamp := header.Get("webhook-timestamp")
	signatures := header.Get("webhook-signature")
	if id == "" || stamp == "" || signatures == "" {
		return nil, errors.New("missing webhook headers")
	}
	seconds, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		return nil, errors.New("invalid webhook-timestamp")
	}
	if age := time.Since(time.Unix(seconds, 0)); age > tolerance || age < -tolerance {
		return nil, errors.New("webhook-timestamp too old or too new")
	}
	signed := append([]byte(id+"."+stamp+"."), body...)
	for _, entry := range strings.Split(signatures, " ") {
		version, encoded, found := strings.Cut(entry, ",")
		if !found {
			continue
		}
		signature, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			continue
		}
		if version == "v1" && strings.HasPrefix(key, "whsec_") {
			secret, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "whsec_"))
			if err != nil {
				return nil, errors.New("invalid whsec_ secret")
			}
			mac := hmac.New(sha256.New, secret)
			mac.Write(signed)
			if hmac.Equal(mac.Sum(nil), signature) {
				return parse(body)
			}
		}
		if version == "v1a" && strings.HasPrefix(key, "whpk_") {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "whpk_"))
			if err != nil || len(raw) != ed25519.PublicKeySize {
				return nil, errors.New("invalid whpk_ public key")
			}
			if ed25519.Verify(ed25519.PublicKey(raw), signed, signature) {
				return parse(body)
			}
		}
	}
	return nil, errors.New("no matching signature")
}

func parse(body []byte) (*Event, error) {
	var event Event
	if err := json.Unmarshal(body, &event); err != nil {
		return nil, err
	}
	return &event, nil
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: verify KEY HEADERS.json BODY")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var fields map[string]string
	if err := json.Unmarshal(raw, &fields); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	header := http.Header{}
	for name, value := range fields {
		header.Set(name, value)
	}
	body, err := os.ReadFile(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	event, err := VerifyRailEvent(os.Args[1], header, body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rejected:", err)
		os.Exit(1)
	}
	fmt.Printf("ok %s %s\n", event.Type, event.ID)
}
