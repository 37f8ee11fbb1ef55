// Package images owns the image catalog in Consul KV (Catalog: one Manifest
// per name and version), the boot server's data-dir layout (Root, Dir,
// AgentDir, the files of a version, DefaultCmdline: the only place these
// paths are built) and building what machines boot into it, each version
// staged and installed by one rename:
//
//   - the discovery environment (Discovery: Debian's kernel plus an
//     initramfs with the Go agent as /init and the module index it selects
//     by, agent/wire's ModuleIndex, written with u-root's cpio package);
//   - the Debian OS image (Debian: a debootstrap tree cached by suite and
//     package list, the mirror from the machine's apt sources, configured
//     for cloud-init NoCloud and a Consul client agent, packed with
//     mkfs.ext4 -d into root.img labelled ironrack-root; deployed machines
//     boot Debian's kernel and a busybox initramfs (RootInitramfs) from the
//     network, their root on the local disk, with the one-line cmdline
//     file);
//   - externally built images (External.Add: copied in, hashed while
//     copying).
//
// NoCloud renders one machine's cloud-init meta-data and user-data
// (hostname, root's SSH keys, the Consul agent's config on a node of its
// own, the operator's user-data merged as MIME multipart), and
// NoCloudCmdline the kernel command line fragment that points cloud-init
// at a seed served over HTTP. It does not serve HTTP: provision serves the
// files and the seeds. See docs/images.md.
package images
