#!/usr/bin/env bash
# Sourced by .ci/run: installs NVRTC from PyPI into a git-ignored folder and puts it on the
# library path, so kernel compilation can be tested on machines with no CUDA toolkit.
W=.cache/cuda-wheels
if [ ! -e "$W/nvidia/cu13/lib/libnvrtc.so.13" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --target "$W" nvidia-cuda-nvrtc==13.0.88
fi
export LD_LIBRARY_PATH="$PWD/$W/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
