#!/usr/bin/env bash
# OpenMPI and libclang (the `mpi` crate's build needs both) from Debian's packages, for the
# multi-rank tests (`--features cloud-train/mpi`) and for CPU clusters. Does nothing when they
# are installed already.
set -euo pipefail
have() {
    command -v mpirun >/dev/null && command -v mpicc >/dev/null &&
        ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1
}
if have; then
    exit 0
fi
pkgs=(libopenmpi-dev openmpi-bin libclang-dev)
if [ "$(id -u)" != 0 ]; then
    echo "install-mpi: need ${pkgs[*]} (run: sudo apt-get install ${pkgs[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${pkgs[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q "${pkgs[@]}" >/dev/null; }
have || { echo "install-mpi: ${pkgs[*]} installed, but mpirun/mpicc/libclang not found" >&2; exit 1; }
echo "install-mpi: installed ${pkgs[*]} ($(mpirun --version | head -1))"
