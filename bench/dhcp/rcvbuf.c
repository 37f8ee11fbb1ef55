/* bench/dhcp/rcvbuf.c: an LD_PRELOAD shim for the benchmark's Kea. After
 * every successful bind() of a UDP socket it asks for the receive buffer
 * ironrack's DHCP servers ask for (4 MiB, SO_RCVBUFFORCE, as root), so both
 * servers queue the same bursts in the kernel: with the default (about
 * 208 KiB), Kea's socket overflowed whenever the host took its core away.
 * run.sh builds it with cc unless RCVBUF_SHIM=0. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
	static int (*real)(int, const struct sockaddr *, socklen_t);
	if (!real)
		real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	int rc = real(fd, addr, len);
	int type = 0;
	socklen_t tl = sizeof type;
	if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM) {
		int size = 4 << 20;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	}
	return rc;
}
