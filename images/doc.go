// Package images owns the image catalog in Consul KV (Catalog: one Manifest
// per name and version) and building what machines boot into the boot
// server's DATA/images/<name>/<version>/ layout: today the discovery
// environment (Discovery: Debian's kernel plus an initramfs with the Go agent
// as /init, written with u-root's cpio package). It does not serve HTTP:
// provision serves the files.
//
// Still to come (the images and agent issue): the OS image built with
// debootstrap.
package images
