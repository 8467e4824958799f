#!/usr/bin/env bash
# Sourced by .ci/run (and by hand: `source scripts/cuda-wheels.sh`): installs, from PyPI, the
# CUDA pieces the GPU-less tests need, and exports where they are:
#   nvidia-cuda-nvrtc      13.0.88  libnvrtc.so.13: compiles kernels/*.cu at run time
#   nvidia-cuda-cuobjdump  13.2.86  cuobjdump: dumps SASS from the CUBINs (tensor-core check)
#   nvidia-cuda-nvdisasm   13.2.86  nvdisasm: the disassembler cuobjdump calls for SASS
# All wheels go in ONE `pip install --target` (a second install into the same folder silently
# skips the existing nvidia/ folder). The folder is git-ignored; when everything is already
# there nothing is downloaded, so sourcing it again costs nothing.
W=.cache/cuda-wheels
_ember_w_lib="$W/nvidia/cu13/lib/libnvrtc.so.13"
_ember_w_bin="$W/nvidia/cu13/bin"
if [ ! -e "$_ember_w_lib" ] || [ ! -x "$_ember_w_bin/cuobjdump" ] || [ ! -x "$_ember_w_bin/nvdisasm" ]; then
  rm -rf "$W"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$W" \
    nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cuobjdump==13.2.86 nvidia-cuda-nvdisasm==13.2.86
fi
export LD_LIBRARY_PATH="$PWD/$W/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PWD/$_ember_w_bin:$PATH"
export EMBER_CUOBJDUMP="$PWD/$_ember_w_bin/cuobjdump"
unset _ember_w_lib _ember_w_bin
