package ipmisim

// chassisScript is the chassis_control program every sim runs. ipmi_sim calls
// it as
//
//	ctl.sh DIR get power boot       -> prints "power:0|1" and "boot:<dev>"
//	ctl.sh DIR set power 1 boot pxe -> stores each value
//
// It keeps the state in files in DIR (power, boot) so that tests can read and
// seed it, and appends every call to DIR/ctl.log so that tests can prove which
// sets were (not) issued. If DIR/hook exists, it is run as
//
//	hook on DIR BOOTDEV
//	hook off DIR
//
// on every change of the power file, so a later issue can start and stop a VM.
// If DIR/refuse-boot exists, every boot set fails (the sim then refuses the
// Set System Boot Options command).
const chassisScript = `#!/bin/sh
dir=$1; shift
op=$1; shift
echo "$op $*" >> "$dir/ctl.log"
case $op in
get)
	for p in "$@"; do
		case $p in
		power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
		boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
		esac
	done
	;;
set)
	while [ $# -ge 2 ]; do
		key=$1; val=$2; shift 2
		case $key in
		boot)
			[ -e "$dir/refuse-boot" ] && exit 1
			echo "$val" > "$dir/boot"
			;;
		power)
			old=$(cat "$dir/power" 2>/dev/null || echo 0)
			echo "$val" > "$dir/power"
			if [ "$old" != "$val" ] && [ -x "$dir/hook" ]; then
				if [ "$val" = 1 ]; then
					"$dir/hook" on "$dir" "$(cat "$dir/boot" 2>/dev/null || echo default)"
				else
					"$dir/hook" off "$dir"
				fi
			fi
			;;
		*)
			echo "$val" > "$dir/$key"
			;;
		esac
	done
	;;
esac
exit 0
`
