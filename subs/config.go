package subs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/pathglob"
)

// Delivery types.
const (
	TypeWebhook  = "webhook"
	TypePullWake = "pull-wake"
)

// Lease bounds (PROTOCOL.md 6.2).
const (
	MinLease     = time.Second
	MaxLease     = 10 * time.Minute
	DefaultLease = 30 * time.Second
)

// Config is a subscription's configuration as PUT sends it, normalized.
type Config struct {
	Type        string   `json:"type"`
	Pattern     string   `json:"pattern,omitempty"`
	Streams     []string `json:"streams,omitempty"`
	WebhookURL  string   `json:"webhook_url,omitempty"`
	WakeStream  string   `json:"wake_stream,omitempty"`
	LeaseTTLMs  int64    `json:"lease_ttl_ms"`
	Description string   `json:"description,omitempty"`
}

// Error is a refused request: an HTTP status, a code of the JSON error
// envelope, and a message.
type Error struct {
	Status  int
	Code    string
	Message string
	Extra   map[string]any // more fields of the error object (ALREADY_CLAIMED)
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(code, format string, args ...any) *Error {
	return &Error{Status: 400, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ParseConfig parses and validates a PUT body. devWebhooks allows
// http://localhost and http://127.0.0.x webhook URLs.
func ParseConfig(body []byte, devWebhooks bool) (Config, *Error) {
	var in struct {
		Type    string   `json:"type"`
		Pattern *string  `json:"pattern"`
		Streams []string `json:"streams"`
		Webhook *struct {
			URL string `json:"url"`
		} `json:"webhook"`
		WakeStream  *string `json:"wake_stream"`
		LeaseTTLMs  *int64  `json:"lease_ttl_ms"`
		Description *string `json:"description"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return Config{}, badRequest("INVALID_REQUEST", "the body must be a JSON subscription configuration: %v", err)
	}
	c := Config{Type: in.Type, LeaseTTLMs: DefaultLease.Milliseconds()}
	switch in.Type {
	case TypeWebhook, TypePullWake:
	default:
		return Config{}, badRequest("INVALID_REQUEST", `type must be "webhook" or "pull-wake"`)
	}
	if in.Pattern != nil && *in.Pattern != "" {
		p := strings.Trim(*in.Pattern, "/")
		if _, err := pathglob.Parse(p); err != nil {
			return Config{}, badRequest("INVALID_REQUEST", "pattern: %v", err)
		}
		if strings.HasPrefix(p, "__ds") {
			return Config{}, badRequest("INVALID_REQUEST", "pattern must not match the reserved __ds namespace")
		}
		c.Pattern = p
	}
	for _, s := range in.Streams {
		p, err := CleanPath(s)
		if err != nil {
			return Config{}, badRequest("INVALID_REQUEST", "streams: %v", err)
		}
		c.Streams = append(c.Streams, p)
	}
	slices.Sort(c.Streams)
	c.Streams = slices.Compact(c.Streams)
	if c.Pattern == "" && len(c.Streams) == 0 {
		return Config{}, badRequest("INVALID_REQUEST", "give a pattern, streams, or both")
	}
	if len(c.Streams) > 10000 {
		return Config{}, badRequest("INVALID_REQUEST", "at most 10000 explicit streams")
	}
	switch c.Type {
	case TypeWebhook:
		if in.Webhook == nil || in.Webhook.URL == "" {
			return Config{}, badRequest("INVALID_REQUEST", "a webhook subscription needs webhook.url")
		}
		if err := CheckWebhookURL(in.Webhook.URL, devWebhooks); err != nil {
			return Config{}, badRequest("WEBHOOK_URL_REJECTED", "%v", err)
		}
		c.WebhookURL = in.Webhook.URL
		if in.WakeStream != nil && *in.WakeStream != "" {
			return Config{}, badRequest("INVALID_REQUEST", "wake_stream is for pull-wake subscriptions")
		}
	case TypePullWake:
		if in.WakeStream == nil || *in.WakeStream == "" {
			return Config{}, badRequest("INVALID_REQUEST", "a pull-wake subscription needs wake_stream")
		}
		p, err := CleanPath(*in.WakeStream)
		if err != nil {
			return Config{}, badRequest("INVALID_REQUEST", "wake_stream: %v", err)
		}
		c.WakeStream = p
		if in.Webhook != nil {
			return Config{}, badRequest("INVALID_REQUEST", "webhook is for webhook subscriptions")
		}
	}
	if in.LeaseTTLMs != nil {
		// In milliseconds: as a Duration a huge value would wrap around
		// into the range.
		if v := *in.LeaseTTLMs; v < MinLease.Milliseconds() || v > MaxLease.Milliseconds() {
			return Config{}, badRequest("INVALID_REQUEST", "lease_ttl_ms must be from 1000 to 600000")
		}
		c.LeaseTTLMs = *in.LeaseTTLMs
	}
	if in.Description != nil {
		if len(*in.Description) > 1024 {
			return Config{}, badRequest("INVALID_REQUEST", "description longer than 1024 bytes")
		}
		c.Description = *in.Description
	}
	return c, nil
}

// Hash is the hash of the normalized configuration that decides whether a
// PUT re-confirms (200) or conflicts (409).
func (c Config) Hash() string {
	b, _ := json.Marshal(c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (c Config) lease() time.Duration { return time.Duration(c.LeaseTTLMs) * time.Millisecond }

// CleanPath validates a stream-root-relative stream path.
func CleanPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" || len(p) > 1024 {
		return "", errors.New("a stream path of 1 to 1024 bytes is required")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%q has an empty, . or .. segment", p)
		}
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return "", fmt.Errorf("%q has control characters", p)
		}
	}
	if p == "__ds" || strings.HasPrefix(p, "__ds/") {
		return "", fmt.Errorf("%q is in the reserved __ds namespace", p)
	}
	return p, nil
}

// CheckWebhookURL applies PROTOCOL.md 12.8: https only, except
// http://localhost and http://127.0.0.x when dev is set; no user info;
// literal private, loopback, link-local and metadata addresses refused.
// (A host name is checked again on every address actually dialled.)
func CheckWebhookURL(raw string, dev bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("webhook url must be an absolute URL")
	}
	if u.User != nil || u.Fragment != "" {
		return fmt.Errorf("webhook url must not carry user info or a fragment")
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	switch u.Scheme {
	case "https":
	case "http":
		if !dev || !devHost(host) {
			return fmt.Errorf("webhook url must use https (http only for localhost and 127.0.0.x in development mode)")
		}
		return nil
	default:
		return fmt.Errorf("webhook url must use https")
	}
	if devHost(host) {
		if dev {
			return nil
		}
		return fmt.Errorf("webhook url names a loopback host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if why, bad := fetch.RestrictedAddress(ip.Unmap()); bad {
			return fmt.Errorf("webhook url names a %s address", why)
		}
	} else if net.ParseIP(host) != nil || strings.Trim(host, "0123456789.x") == "" {
		return fmt.Errorf("webhook url host %q is not a plain name or IP", host)
	}
	return nil
}

// devHost: the hosts of the development exception.
func devHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && devAddr(ip)
}

// devAddr: 127.0.0.0/24, the addresses of the development exception.
func devAddr(ip netip.Addr) bool {
	return ip.Is4() && ip.As4()[0] == 127 && ip.As4()[1] == 0 && ip.As4()[2] == 0
}
