package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

const cookieName = "ironrack_session"

// session is one login: the token's name and role, and the CSRF token
// every form of the session carries.
type session struct {
	Name, Role string
	CSRF       string
	expires    time.Time
}

// sessions are kept in memory: a restarted UI asks for the token again.
type sessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[string]*session{}}
}

func randomString() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session and returns its ID.
func (ss *sessions) create(name, role string) (string, *session) {
	id := randomString()
	s := &session{Name: name, Role: role, CSRF: randomString(), expires: time.Now().Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := time.Now()
	for k, v := range ss.m {
		if now.After(v.expires) {
			delete(ss.m, k)
		}
	}
	ss.m[id] = s
	return id, s
}

func (ss *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[c.Value]
	if s == nil || time.Now().After(s.expires) {
		delete(ss.m, c.Value)
		return nil
	}
	return s
}

func (ss *sessions) drop(r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		ss.mu.Lock()
		delete(ss.m, c.Value)
		ss.mu.Unlock()
	}
}

// checkCSRF reports whether the form's csrf field is the session's, and
// whether a browser's Origin header (when sent) is this host.
func (s *session) checkCSRF(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if o != "http://"+r.Host && o != "https://"+r.Host {
			return false
		}
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) == 1
}
