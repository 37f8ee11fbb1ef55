// Package images will own the image catalog (in Consul KV) and the builds of
// the discovery initramfs and the OS image, into the boot server's
// DATA/images/<name>/<version>/ layout. It does not serve HTTP: provision
// serves the files.
//
// Nothing is implemented here yet; see the images and agent issue. Until
// then scripts/boot-artifacts builds the test stand-in (a Debian kernel and a
// busybox initramfs).
package images
