package agent

import (
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// A slice of the real discovery index: virtio, e1000e, mlx5_core, ahci and
// sd_mod with their dependencies.
const testIndex = `{"modules":{
 "virtio_ring.ko":{},
 "virtio.ko":{"depends":["virtio_ring.ko"]},
 "virtio_pci.ko":{"depends":["virtio.ko","virtio_ring.ko"],"pci":["pci:v00001AF4d*sv*sd*bc*sc*i*"]},
 "virtio_net.ko":{"depends":["net_failover.ko","virtio.ko","virtio_ring.ko"],"other_aliases":1},
 "failover.ko":{},
 "net_failover.ko":{"depends":["failover.ko"]},
 "e1000e.ko":{"pci":["pci:v00008086d000010D3sv*sd*bc*sc*i*","pci:v00008086d0000105Esv*sd*bc*sc*i*"]},
 "mlxfw.ko":{},
 "mlx5_core.ko":{"depends":["mlxfw.ko"],"pci":["pci:v000015B3d00001017sv*sd*bc*sc*i*"],"other_aliases":2},
 "libata.ko":{},
 "libahci.ko":{"depends":["libata.ko"]},
 "ahci.ko":{"depends":["libahci.ko","libata.ko"],"pci":["pci:v*d*sv*sd*bc01sc06i01*"]},
 "sd_mod.ko":{"other_aliases":3}
}}`

var testOrder = []string{"virtio_ring.ko", "virtio.ko", "virtio_pci.ko", "failover.ko", "net_failover.ko", "virtio_net.ko",
	"e1000e.ko", "mlxfw.ko", "mlx5_core.ko", "libata.ko", "libahci.ko", "ahci.ko", "sd_mod.ko", "unknown.ko"}

func pciFS(modaliases ...string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for i, a := range modaliases {
		fsys["sys/bus/pci/devices/0000:00:0"+string(rune('0'+i))+".0/modalias"] = &fstest.MapFile{Data: []byte(a + "\n")}
	}
	return fsys
}

func TestSelectModules(t *testing.T) {
	tests := map[string]struct {
		devices []string
		want    []string
	}{
		"qemu: virtio, an e1000e, an ICH9 AHCI controller": {
			devices: []string{"pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
				"pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"},
			want: []string{"virtio_ring.ko", "virtio.ko", "virtio_pci.ko", "failover.ko", "net_failover.ko", "virtio_net.ko",
				"e1000e.ko", "libata.ko", "libahci.ko", "ahci.ko", "sd_mod.ko", "unknown.ko"},
		},
		"a server with a ConnectX-5 only": {
			devices: []string{"pci:v000015B3d00001017sv000015B3sd00000020bc02sc00i00"},
			// virtio_net and sd_mod have aliases on other buses: always.
			want: []string{"virtio_ring.ko", "virtio.ko", "failover.ko", "net_failover.ko", "virtio_net.ko",
				"mlxfw.ko", "mlx5_core.ko", "sd_mod.ko", "unknown.ko"},
		},
		"no PCI devices readable": {
			want: []string{"virtio_ring.ko", "virtio.ko", "failover.ko", "net_failover.ko", "virtio_net.ko", "sd_mod.ko", "unknown.ko"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := SelectModules(pciFS(tc.devices...), testOrder, []byte(testIndex))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("selected (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := SelectModules(pciFS(), testOrder, []byte("{")); err == nil {
		t.Error("a corrupt index: no error")
	}
}
