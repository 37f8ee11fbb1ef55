package ipmisim

import (
	"fmt"
	"strings"
)

// FRU is the inventory a sim reports as FRU device 0 (board and product
// areas of the Platform Management FRU format v1.0).
type FRU struct {
	Manufacturer string
	Product      string
	Serial       string // board and product serial
	PartNumber   string
}

// encode returns the FRU image: common header, board area, product area.
func (f FRU) encode() ([]byte, error) {
	board, err := fruArea([]byte{1, 0, 0, 0, 0, 0}, f.Manufacturer, f.Product, f.Serial, f.PartNumber, "")
	if err != nil {
		return nil, fmt.Errorf("board area: %w", err)
	}
	product, err := fruArea([]byte{1, 0, 0}, f.Manufacturer, f.Product, f.PartNumber, "1", f.Serial, "", "")
	if err != nil {
		return nil, fmt.Errorf("product area: %w", err)
	}
	header := []byte{1, 0, 0, 1, byte(1 + len(board)/8), 0, 0, 0}
	header[7] = checksum(header[:7])
	out := append(header, board...)
	return append(out, product...), nil
}

// fruArea builds one area: prefix (version, length placeholder, language and
// for the board area the date), the fields as 8-bit ASCII, the end marker,
// padding to 8 bytes and the checksum. prefix[1] is set to the length.
func fruArea(prefix []byte, fields ...string) ([]byte, error) {
	a := append([]byte{}, prefix...)
	for _, s := range fields {
		if len(s) > 63 {
			return nil, fmt.Errorf("field %q longer than 63 bytes", s)
		}
		a = append(a, 0xC0|byte(len(s)))
		a = append(a, s...)
	}
	a = append(a, 0xC1)
	for (len(a)+1)%8 != 0 {
		a = append(a, 0)
	}
	a = append(a, 0)
	a[1] = byte(len(a) / 8)
	a[len(a)-1] = checksum(a[:len(a)-1])
	return a, nil
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// emuFRU renders the emu command that loads data as FRU device 0 of MC 0x20.
func emuFRU(data []byte) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "mc_add_fru_data 0x20 0 %d data", len(data))
	for _, b := range data {
		fmt.Fprintf(&sb, " 0x%02x", b)
	}
	sb.WriteString("\n")
	return sb.String()
}
