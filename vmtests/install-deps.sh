#!/usr/bin/env bash
# Installs what `make vmtest` needs on a Debian machine, as root: qemu for the
# VMs; dpkg-deb, apt-get and the Debian archive keyring to fetch and unpack
# the kernels; mmdebstrap to build the root filesystems of the systemd VMs.
# Idempotent: apt is only called when something is missing.
set -euo pipefail

need=()
for pkg in qemu-system-x86 dpkg apt debian-archive-keyring mmdebstrap; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "vmtests/install-deps.sh: missing ${need[*]}; run as root to install" >&2
		exit 1
	fi
	echo "vmtests: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v qemu-system-x86_64 >/dev/null
command -v mmdebstrap >/dev/null
