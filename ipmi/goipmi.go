package ipmi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/bmc"
	"github.com/bmc-toolbox/bmclib/v2/providers"
	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/app"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/jacobweinstock/registrar"
)

// goipmiName is the bmclib provider name of ironrack's pure-Go IPMI driver.
const goipmiName = "goipmi"

var goipmiFeatures = registrar.Features{
	providers.FeaturePowerState,
	providers.FeaturePowerSet,
	providers.FeatureBootDeviceSet,
	providers.FeatureUserUpdate,
}

// goipmiDriver is a bmclib provider over github.com/bougou/go-ipmi: one RMCP+
// session per Open/Close, no process per call. It implements bmclib's
// Opener, Closer, PowerStateGetter, PowerSetter, BootDeviceSetter,
// BootDeviceOverrideGetter and UserUpdater, plus the narrow interfaces the
// Controller declares for what bmclib has no interface for (boot flags with
// the valid bit, device ID, FRU).
type goipmiDriver struct {
	cred     Credentials
	exchange time.Duration // per UDP exchange
	retries  int

	c *client.Client
	// broken is set after a transport failure: Close then skips the Close
	// Session round trip that could only time out.
	broken bool
	// admin is set once the session privilege has been raised for writes.
	admin bool
}

func (d *goipmiDriver) Name() string { return goipmiName }

// Open logs in with RMCP+ Open Session and RAKP 1-4 only: three round trips.
// It skips Get Channel Authentication Capabilities (discovery, optional per
// IPMI 2.0 §13.15) and starts at the session's initial User privilege,
// which reads need; writes raise it first (elevate). That is two packets
// fewer than ipmitool and ipmipower per status read. If a BMC does not take
// the short form for any reason other than credentials or transport, Open
// falls back to go-ipmi's full Connect.
func (d *goipmiDriver) Open(ctx context.Context) error {
	c, err := d.newClient()
	if err != nil {
		return err
	}
	err = shortConnect(ctx, c)
	if err != nil && !errors.Is(classify(err), ErrAuth) && !transport(classify(err)) {
		closeUnsent(c)
		if c, err = d.newClient(); err != nil {
			return err
		}
		if d.cred.CipherSuite == 0 {
			// Let go-ipmi's Connect also try suite 17 for BMCs without 3.
			c.WithCipherSuiteID(types.CipherSuiteID(d.cred.cipherSuite()), types.CipherSuiteID(17))
		}
		err = c.Connect(ctx)
		d.admin = err == nil
	}
	if err != nil {
		closeUnsent(c)
		err = classify(err)
		if errors.Is(err, ErrAuth) {
			// The cause as go-ipmi words it, without its retry narrative.
			return fmt.Errorf("login as %q: %w (%s)", d.cred.Username, ErrAuth, lastCause(err.Error()))
		}
		return fmt.Errorf("login: %w", err)
	}
	d.c = c
	return nil
}

func (d *goipmiDriver) newClient() (*client.Client, error) {
	c, err := client.NewClient(d.cred.Host, d.cred.ipmiPort(), d.cred.Username, d.cred.Password)
	if err != nil {
		return nil, err
	}
	c.WithCipherSuiteID(types.CipherSuiteID(d.cred.cipherSuite()))
	c.WithMaxPrivilegeLevel(types.PrivilegeLevelAdministrator)
	c.WithTimeout(d.exchange)
	c.WithRetry(d.retries)
	return c, nil
}

func shortConnect(ctx context.Context, c *client.Client) error {
	if _, err := c.OpenSession(ctx); err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	if _, err := c.RAKPMessage1(ctx); err != nil {
		return fmt.Errorf("rakp 1/2: %w", err)
	}
	if _, err := c.RAKPMessage3(ctx); err != nil {
		return fmt.Errorf("rakp 3/4: %w", err)
	}
	return nil
}

// closeUnsent closes the client's UDP socket without sending anything (a
// done context stops Close Session before it is sent).
func closeUnsent(c *client.Client) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	_ = c.Close(done)
}

// read runs a read at the session's current privilege and, if the BMC
// wants more (completion code 0xD4), raises it and runs it again.
func (d *goipmiDriver) read(ctx context.Context, fn func() error) error {
	err := fn()
	var resp *types.ResponseError
	if err != nil && !d.admin && errors.As(err, &resp) && resp.CompletionCode() == types.CodeInsufficientPrivilege {
		if err := d.elevate(ctx); err != nil {
			return err
		}
		err = fn()
	}
	return err
}

// elevate raises the session to administrator (or operator, for users
// capped there) before the first write.
func (d *goipmiDriver) elevate(ctx context.Context) error {
	if d.admin {
		return nil
	}
	_, err := d.c.SetSessionPrivilegeLevel(ctx, types.PrivilegeLevelAdministrator)
	if err != nil && !transport(classify(err)) {
		_, err = d.c.SetSessionPrivilegeLevel(ctx, types.PrivilegeLevelOperator)
	}
	if err := d.do("set session privilege", err); err != nil {
		return err
	}
	d.admin = true
	return nil
}

// Close ends the session (Close Session, unless the BMC stopped answering)
// and closes the socket. It waits at most 500 ms for the BMC.
func (d *goipmiDriver) Close(ctx context.Context) error {
	if d.c == nil {
		return nil
	}
	c := d.c
	d.c = nil
	if d.broken {
		closeUnsent(c)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		return fmt.Errorf("close: %w", classify(err))
	}
	return nil
}

// do runs one call on the open session and records transport failures.
func (d *goipmiDriver) do(what string, err error) error {
	if err == nil {
		return nil
	}
	err = classify(err)
	if transport(err) {
		d.broken = true
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (d *goipmiDriver) session() (*client.Client, error) {
	if d.c == nil {
		return nil, errors.New("session not open")
	}
	return d.c, nil
}

// PowerStateGet reads Get Chassis Status: "on" or "off".
func (d *goipmiDriver) PowerStateGet(ctx context.Context) (string, error) {
	c, err := d.session()
	if err != nil {
		return "", err
	}
	var st *chassis.GetChassisStatusResponse
	err = d.read(ctx, func() (err error) { st, err = c.GetChassisStatus(ctx); return err })
	if err := d.do("chassis status", err); err != nil {
		return "", err
	}
	if st.PowerIsOn {
		return string(StateOn), nil
	}
	return string(StateOff), nil
}

// PowerSet sends one Chassis Control command. It does not read the state
// first: the Controller decides whether a command is needed.
func (d *goipmiDriver) PowerSet(ctx context.Context, state string) (bool, error) {
	c, err := d.session()
	if err != nil {
		return false, err
	}
	controls := map[string]chassis.ChassisControl{
		"on":    chassis.ChassisControlPowerUp,
		"off":   chassis.ChassisControlPowerDown,
		"cycle": chassis.ChassisControlPowerCycle,
		"reset": chassis.ChassisControlHardReset,
		"soft":  chassis.ChassisControlSoftShutdown,
	}
	ctl, ok := controls[strings.ToLower(state)]
	if !ok {
		return false, fmt.Errorf("power %q: %w", state, ErrUnsupported)
	}
	if err := d.elevate(ctx); err != nil {
		return false, err
	}
	_, err = c.ChassisControl(ctx, ctl)
	if err := d.do("chassis control "+state, err); err != nil {
		return false, err
	}
	return true, nil
}

var bootSelectors = map[BootDevice]types.BootDeviceSelector{
	BootNone:  types.BootDeviceSelectorNoOverride,
	BootPXE:   types.BootDeviceSelectorForcePXE,
	BootDisk:  types.BootDeviceSelectorForceHardDrive,
	BootBIOS:  types.BootDeviceSelectorForceBIOSSetup,
	BootCDROM: types.BootDeviceSelectorForceCDROM,
	"floppy":  types.BootDeviceSelectorForceFloppy,
}

// BootDeviceSet sets boot parameter 5 (boot flags) with the valid bit.
func (d *goipmiDriver) BootDeviceSet(ctx context.Context, device string, persistent, efi bool) (bool, error) {
	c, err := d.session()
	if err != nil {
		return false, err
	}
	sel, ok := bootSelectors[BootDevice(strings.ToLower(device))]
	if !ok {
		return false, fmt.Errorf("boot device %q: %w", device, ErrUnsupported)
	}
	bootType := types.BIOSBootTypeLegacy
	if efi {
		bootType = types.BIOSBootTypeEFI
	}
	if err := d.elevate(ctx); err != nil {
		return false, err
	}
	err = c.SetBootDevice(ctx, sel, bootType, persistent)
	if err := d.do("set boot device "+device, err); err != nil {
		return false, err
	}
	return true, nil
}

// bootFlags reads boot parameter 5, including the valid bit bmclib's
// BootDeviceOverride has no field for.
func (d *goipmiDriver) bootFlags(ctx context.Context) (BootOverride, error) {
	c, err := d.session()
	if err != nil {
		return BootOverride{}, err
	}
	flags := &types.BootOptionParam_BootFlags{}
	err = d.read(ctx, func() error { return c.GetSystemBootOptionsParamFor(ctx, flags) })
	if err := d.do("get boot flags", err); err != nil {
		return BootOverride{}, err
	}
	dev := BootDevice(fmt.Sprintf("selector-%#x", uint8(flags.BootDeviceSelector)))
	for name, sel := range bootSelectors {
		if sel == flags.BootDeviceSelector {
			dev = name
		}
	}
	return BootOverride{
		Device:     dev,
		Persistent: flags.Persist,
		EFI:        flags.BIOSBootType == types.BIOSBootTypeEFI,
		Valid:      flags.BootFlagsValid,
	}, nil
}

// BootDeviceOverrideGet is bmclib's read-back interface.
func (d *goipmiDriver) BootDeviceOverrideGet(ctx context.Context) (bmc.BootDeviceOverride, error) {
	o, err := d.bootFlags(ctx)
	if err != nil {
		return bmc.BootDeviceOverride{}, err
	}
	return bmc.BootDeviceOverride{
		IsPersistent: o.Persistent,
		IsEFIBoot:    o.EFI,
		Device:       bmc.BootDeviceType(o.Device),
	}, nil
}

// info reads Get Device ID.
func (d *goipmiDriver) info(ctx context.Context) (Info, error) {
	c, err := d.session()
	if err != nil {
		return Info{}, err
	}
	var id *app.GetDeviceIDResponse
	err = d.read(ctx, func() (err error) { id, err = c.GetDeviceID(ctx); return err })
	if err := d.do("get device id", err); err != nil {
		return Info{}, err
	}
	return Info{
		ManufacturerID: id.ManufacturerID,
		Manufacturer:   types.OEM(id.ManufacturerID).String(),
		ProductID:      id.ProductID,
		Firmware:       fmt.Sprintf("%d.%02x", id.MajorFirmwareRevision, id.MinorFirmwareRevision),
		IPMIVersion:    fmt.Sprintf("%d.%d", id.MajorIPMIVersion, id.MinorIPMIVersion),
	}, nil
}

// fru reads FRU device 0 (the BMC's built-in FRU).
func (d *goipmiDriver) fru(ctx context.Context) (FRU, error) {
	c, err := d.session()
	if err != nil {
		return FRU{}, err
	}
	var f *types.FRU
	err = d.read(ctx, func() (err error) { f, err = c.GetFRU(ctx, 0, "builtin"); return err })
	if err != nil {
		var resp *types.ResponseError
		if errors.As(err, &resp) && resp.CompletionCode() == types.CodeRequestDataFieldInvalid {
			// ipmi_sim answers "invalid data field" for a missing FRU.
			return FRU{}, fmt.Errorf("read FRU 0: %w: %w", ErrUnsupported, err)
		}
		return FRU{}, d.do("read FRU 0", err)
	}
	if f.DeviceNotPresent {
		return FRU{}, fmt.Errorf("read FRU 0: %w: device not present (%s)", ErrUnsupported, f.DeviceNotPresentReason)
	}
	var out FRU
	if b := f.BoardInfoArea; b != nil {
		out.BoardManufacturer, out.BoardProduct = string(b.Manufacturer), string(b.ProductName)
		out.BoardSerial, out.BoardPartNumber = string(b.SerialNumber), string(b.PartNumber)
	}
	if p := f.ProductInfoArea; p != nil {
		out.ProductManufacturer, out.ProductName = string(p.Manufacturer), string(p.Name)
		out.ProductSerial, out.ProductPartNumber = string(p.SerialNumber), string(p.PartModel)
	}
	if ch := f.ChassisInfoArea; ch != nil {
		out.ChassisSerial = string(ch.SerialNumber)
	}
	return out, nil
}

// UserUpdate sets the password of the named user (IPMI Set User Password,
// 20-byte form when longer than 16 bytes). role is ignored: the user keeps
// its privilege.
func (d *goipmiDriver) UserUpdate(ctx context.Context, user, pass, role string) (bool, error) {
	c, err := d.session()
	if err != nil {
		return false, err
	}
	if err := d.elevate(ctx); err != nil {
		return false, err
	}
	id, err := d.userID(ctx, user)
	if err != nil {
		return false, err
	}
	_, err = c.SetUserPassword(ctx, id, pass, len(pass) > 16)
	if err := d.do(fmt.Sprintf("set password of user %d", id), err); err != nil {
		return false, err
	}
	return true, nil
}

// userID finds the user ID of name: Get User Access (for the number of user
// IDs), then Get User Name per ID. IDs the BMC has no name for are skipped.
func (d *goipmiDriver) userID(ctx context.Context, name string) (uint8, error) {
	const channelSelf = 0x0e
	access, err := d.c.GetUserAccess(ctx, channelSelf, 1)
	if err != nil {
		return 0, d.do("get user access", err)
	}
	for id := uint8(1); id <= access.MaxUsersIDCount && id < 64; id++ {
		res, err := d.c.GetUsername(ctx, id)
		if err != nil {
			var resp *types.ResponseError
			if errors.As(err, &resp) {
				continue // no name at this ID
			}
			return 0, d.do("get user name", err)
		}
		if res.Username == name {
			return id, nil
		}
	}
	return 0, fmt.Errorf("user %q not found on the BMC: %w", name, ErrUnsupported)
}
