package capacity

import (
	"bytes"
	"testing"
)

// FuzzParseModel: an operator's model file never panics the parser, and a
// model it accepts plans without panicking.
func FuzzParseModel(f *testing.F) {
	f.Add(defaultModel)
	f.Add([]byte(testModel))
	f.Add([]byte(`{"replication_factor": 1, "classes": [{"name": "a", "where": "tags.x matches \"(\"", "ingestion_events_per_sec": 1, "storage_bytes": 1, "query_qps": 1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModel("fuzz.json", bytes.NewReader(data))
		if err != nil {
			return
		}
		pool := Pool{}
		for _, c := range m.Classes {
			pool[c.Name] = machines(c.Name, []string{"r1", "r2", "r3"}, 2)
		}
		m.Plan(Input{EventsPerSec: 1000, RetentionDays: 1, BytesPerEvent: 100, QueriesPerSec: 10}, nil, pool)
	})
}
