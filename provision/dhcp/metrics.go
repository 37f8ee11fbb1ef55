package dhcp

import (
	"errors"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	received     *prometheus.CounterVec
	replies      *prometheus.CounterVec
	ignored      *prometheus.CounterVec
	errors       prometheus.Counter
	enlistErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironrack_dhcp_requests_total", Help: "DHCP requests received, by message type.",
		}, []string{"type"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironrack_dhcp_replies_total", Help: "DHCP replies built, by message type.",
		}, []string{"type"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ironrack_dhcp_ignored_total", Help: "DHCP requests answered with nothing, by reason.",
		}, []string{"reason"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ironrack_dhcp_errors_total", Help: "DHCP requests not answered because a store or lookup failed.",
		}),
		enlistErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ironrack_dhcp_enlist_errors_total", Help: "Failed enlistments of PXE clients.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.replies, m.ignored, m.errors, m.enlistErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// msgType names mt for a label; unknown values share one label so a
// hostile client cannot grow the label set.
func msgType(mt dhcpv4.MessageType) string {
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeRequest,
		dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform:
		return mt.String()
	}
	return "other"
}

func (s *Server) count(req, resp *dhcpv4.DHCPv4, reason string, err error) {
	s.metrics.received.WithLabelValues(msgType(req.MessageType())).Inc()
	switch {
	case errors.Is(err, ErrStale):
		s.metrics.ignored.WithLabelValues("stale").Inc()
	case err != nil:
		s.metrics.errors.Inc()
	case resp != nil:
		s.metrics.replies.WithLabelValues(msgType(resp.MessageType())).Inc()
	default:
		s.metrics.ignored.WithLabelValues(reason).Inc()
	}
}
