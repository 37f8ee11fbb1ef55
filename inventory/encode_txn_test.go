package inventory

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"
)

// TestEncodeTxnMeansTheSame: the slim transaction body decodes to exactly
// the operations the api package would have sent, for every kind ironrack
// writes and for one it does not (which falls back to the full form).
func TestEncodeTxnMeansTheSame(t *testing.T) {
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "ironrack/machines/m1", Value: []byte(`{"id":"m1"}`), Index: 42}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: "ironrack/index/mac/aa", Value: []byte("m1"), Index: 0}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "ironrack/pool/3c/r1/m1"}},
		{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: "ironrack/by/state/x/m1"}},
		{KV: &api.KVTxnOp{Verb: api.KVDeleteTree, Key: "ironrack/history/m1/"}},
		{KV: &api.KVTxnOp{Verb: api.KVLock, Key: "ironrack/lock", Value: []byte("h"), Session: "s1", Flags: 3}},
		{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "m1", Address: "0.0.0.0", Meta: map[string]string{"ironrack": "machine", "state": "ready"}}}},
		{Node: &api.NodeTxnOp{Verb: api.NodeDelete, Node: api.Node{Node: "m1"}}},
		{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{ID: "0b5c0a1e-7a4b-4c1e-9d2f-1a2b3c4d5e6f", Node: "m3", Address: "::1"}}},
		// Strings that need escaping, and bytes that are not UTF-8.
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: "ironrack/by/rack/r\"1\\<&>\tü/m1", Value: []byte{0, 0xff, '"'}}},
		{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "m1", Address: "0.0.0.0", Meta: map[string]string{"model": "R650 \"x\" ü\x01", "vendor": "Dell\xff"}}}},
		{Node: &api.NodeTxnOp{Verb: api.NodeSet, Node: api.Node{Node: "m2", Address: "10.0.0.2", TaggedAddresses: map[string]string{"lan": "10.0.0.2"}}}},
		{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "m1", Service: api.AgentService{ID: "web", Service: "web", Port: 80}}},
	}
	body, err := encodeTxn(ops)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := json.Marshal(ops)
	if len(body) >= len(full) {
		t.Errorf("slim body is %d bytes, the api's %d", len(body), len(full))
	}
	var got, want api.TxnOps
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body does not decode: %v\n%s", err, body)
	}
	if err := json.Unmarshal(full, &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("slim body means something else (-api +slim):\n%s", diff)
	}
}

// TestAppendJSONStringIsEncodingJSON: the hand-written string encoder
// writes exactly encoding/json's bytes.
func TestAppendJSONStringIsEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "m-3e60462a4efe", "ironrack/pool/3c/r1/m1", `a"b`, `a\b`, "<&>", "tab\there", "ü", "\x00", "\xff", "\u2028", "~ !#$%'()*+,-./:;=?@[]^_`{|}"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, encoding/json %s", s, got[1:], want)
		}
	}
}
